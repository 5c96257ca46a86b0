"""First pull and cached start of a ~300 MB containerDisk from a loopback registry.

    .venv/bin/python bench/image_pull.py [--size-mb 300] [--runs 3] [--no-vm]

Builds a containerDisk (`python -m localcluster containerdisk`'s code) around a raw disk of
SIZE MB of random bytes (incompressible: the layer is as big as the disk, the worst case for the
network and the digest checks), pushes it with skopeo to Debian's docker-registry on 127.0.0.1, then:

- `pull`: localcluster/registry's pull_image into an empty cache (skopeo streams and verifies the
  blobs) plus taking the disk out of the layer (disk_of), then the same reference again from the
  cache (IfNotPresent: no registry request), the peak RSS of this process and of skopeo;
- `vm` (qemu runtime, unless --no-vm): a VMI with that containerDisk through the real API, time from
  the create call to phase Running, first with an empty pull cache, then again (a new VMI of the same
  image: cached start). Running means QEMU is up; the disk boots nothing, so that is all it measures.

Prints one line per measurement; the host's load average goes with them (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client

from localcluster.harness import start_local_cluster
from localcluster.registry.containerdisk import build_layout, disk_files, disk_of
from localcluster.registry.pull import ImageCache, pull_image
from localcluster.registry.server import run_registry
from tests.localcluster_qemu.qemu_helpers import demo_vmi

VMI = ("kubevirt.io", "v1")


def make_disk(path: Path, size_mb: int) -> None:
    with path.open("wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1 << 20))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def bench_pull(reference: str, folder: Path, runs: int) -> None:
    firsts, cached = [], []
    for run in range(runs):
        cache = ImageCache(folder / f"cache-{run}")
        image, pulled = timed(pull_image, reference, cache=cache)
        (_, _), unpacked = timed(disk_of, image, folder / f"disk-{run}")
        firsts.append((pulled, unpacked))
        _, again = timed(pull_image, reference, cache=cache)
        cached.append(again)
    pulls = [p for p, _ in firsts]
    unpacks = [u for _, u in firsts]
    print(
        f"first pull: median {statistics.median(pulls):.2f} s (runs {', '.join(f'{p:.2f}' for p in pulls)})"
    )
    print(f"disk out of the layer: median {statistics.median(unpacks):.2f} s")
    print(f"cached pull: median {statistics.median(cached) * 1000:.1f} ms")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: this process {own:.0f} MB, largest child (skopeo) {children:.0f} MB")


def wait_running(custom, namespace: str, name: str, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        vmi = custom.get_namespaced_custom_object(*VMI, namespace, "virtualmachineinstances", name)
        if (vmi.get("status") or {}).get("phase") == "Running":
            return time.perf_counter() - started
        time.sleep(0.05)
    raise SystemExit(f"{name} did not run in {timeout:.0f} s: {vmi.get('status')}")


def bench_vm(reference: str, folder: Path, runs: int) -> None:
    with start_local_cluster(folder / "cluster", runtime="qemu") as cluster:
        api = cluster.api_client("admin")
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        namespace = f"bench-pull-{secrets.token_hex(3)}"
        core.create_namespace({"metadata": {"name": namespace}})
        try:
            for index in range(runs + 1):
                name = f"vm{index}"
                started = time.perf_counter()
                custom.create_namespaced_custom_object(
                    *VMI, namespace, "virtualmachineinstances", demo_vmi(name, image=reference)
                )
                wait_running(custom, namespace, name)
                elapsed = time.perf_counter() - started
                kind = "first start (pull)" if index == 0 else "cached start"
                print(f"{kind}: create -> Running {elapsed:.2f} s")
                custom.delete_namespaced_custom_object(*VMI, namespace, "virtualmachineinstances", name)
        finally:
            core.delete_namespace(namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-vm", action="store_true", help="skip the qemu runtime measurement")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as scratch:
        folder = Path(scratch)
        disk = folder / "disk.raw"
        make_disk(disk, args.size_mb)
        _, built = timed(build_layout, folder / "layout", disk_files(disk))
        layer = max((folder / "layout" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
        size = layer.stat().st_size / 1e6
        print(f"containerDisk of {args.size_mb} MB: layer {size:.0f} MB, built in {built:.2f} s")
        with run_registry(folder / "registry") as registry:
            _, pushed = timed(registry.push_layout, folder / "layout", "bench/disk:1")
            print(f"push (skopeo): {pushed:.2f} s")
            reference = registry.reference("bench/disk:1")
            bench_pull(reference, folder, args.runs)
            if not args.no_vm:
                bench_vm(reference, folder, args.runs)
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
