"""Container machines on the local cluster: create → shell prompt, and memory per idle container.

    .venv/bin/python bench/container_start.py [--runs 10] [--idle 5] [--count 10]

Starts a local cluster (runtime `none`: containers are real runc containers either way; VMs are
bench/vm_boot.py's) with the busybox tools image as a local OCI layout (so "cached": no pull), then
`--runs` times, one after the other: create a Pod through the real API, wait until its container
runs (the watch-free way a client does: polling GET every 10 ms), open `pods/exec` with a TTY over
the real websocket (v5.channel.k8s.io) running `sh`, and wait for the shell's prompt (`# `); the time
from the create call to the prompt. Then `--count` pods at once, idle for `--idle` seconds, and per
container: the memory its cgroup charges (memory.usage_in_bytes, cgroup v1; memory.current on v2)
and the resident memory (VmRSS) of what the local cluster runs beside it (the pod's sandbox process,
its vde_plug2tap, and `runc run` waiting on the container). Needs root, runc, umoci, vde2,
dnsmasq-base and busybox-static. Prints the machine's load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client
from websockets.sync.client import connect

from localcluster.containers import toolsimage
from localcluster.harness import start_local_cluster

IMAGE = toolsimage.TOOLS_REFERENCE


def pod(name: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "machine", "image": IMAGE, "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
            ],
        },
    }


def wait_running(core: client.CoreV1Api, ns: str, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = core.read_namespaced_pod(name, ns).status
        if status.container_statuses and status.container_statuses[0].state.running:
            return
        time.sleep(0.01)
    raise SystemExit(f"{ns}/{name} did not start")


def prompt(cluster, ns: str, name: str) -> None:
    query = urlencode(
        [("container", "machine"), ("command", "sh"), ("stdin", "true"), ("stdout", "true"), ("tty", "true")]
    )
    url = cluster.url.replace("https://", "wss://") + f"/api/v1/namespaces/{ns}/pods/{name}/exec?{query}"
    with connect(
        url,
        ssl=cluster.ssl_context(),
        subprotocols=["v5.channel.k8s.io"],
        additional_headers={"Authorization": f"Bearer {cluster.token('admin')}"},
    ) as ws:
        seen = b""
        while b"# " not in seen:
            message = ws.recv(timeout=10)
            if message[:1] == b"\x01":
                seen += message[1:]


def cgroup_memory(uid: str) -> int:
    for path in Path("/sys/fs/cgroup").glob(f"memory/localcluster-*/{uid}/machine/memory.usage_in_bytes"):
        return int(path.read_text())
    for path in Path("/sys/fs/cgroup").glob(f"localcluster-*/{uid}/machine/memory.current"):
        return int(path.read_text())
    return 0


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def helpers_rss(uid: str) -> int:
    """VmRSS (KiB) of the processes whose command line names the pod: runc run, sandbox, plug."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if uid.encode() in cmdline:
            total += rss_kib(int(proc.name))
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    if missing := toolsimage.missing_packages():
        raise SystemExit("needs: apt-get install " + " ".join(missing))
    with tempfile.TemporaryDirectory(prefix="bench-containers-") as work:
        images = Path(work) / "images"
        toolsimage.build(images, tag="1")
        with start_local_cluster(
            Path(work) / "cluster", extra_args=["--container-images", str(images)]
        ) as cluster:
            core = client.CoreV1Api(cluster.api_client("admin"))
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            core.create_namespace({"metadata": {"name": ns}})
            times = []
            for run in range(args.runs + 1):  # the first one warms up (network, caches): not counted
                name = f"c{run}"
                started = time.monotonic()
                core.create_namespaced_pod(ns, pod(name))
                wait_running(core, ns, name)
                prompt(cluster, ns, name)
                if run:
                    times.append(time.monotonic() - started)
                core.delete_namespaced_pod(name, ns)
            print(
                f"create -> shell prompt over {args.runs} runs: median {statistics.median(times):.2f} s, "
                f"min {min(times):.2f} s, max {max(times):.2f} s"
            )
            names = [f"idle{i}" for i in range(args.count)]
            for name in names:
                core.create_namespaced_pod(ns, pod(name))
            for name in names:
                wait_running(core, ns, name)
            time.sleep(args.idle)
            uids = [core.read_namespaced_pod(n, ns).metadata.uid for n in names]
            charged = [cgroup_memory(uid) / 1024 for uid in uids]
            beside = [helpers_rss(uid) for uid in uids]
            print(
                f"{args.count} idle containers after {args.idle:g} s: cgroup memory median "
                f"{statistics.median(charged) / 1024:.2f} MiB, beside it (runc run, sandbox, plug) median "
                f"{statistics.median(beside) / 1024:.2f} MiB RSS"
            )
            core.delete_namespace(ns)
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    print(json.dumps({"median_prompt_s": statistics.median(times)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
