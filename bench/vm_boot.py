"""Boot time and memory of the local cluster's qemu runtime with the demo images.

    .venv/bin/python bench/vm_boot.py [--image demo|desktop] [--sizes 1 4] [--idle 10] [--runs 1]
                                      [--debian RUNS]

For each size N, creates N VMIs at once in one namespace through the real API and measures, per VM,
the time from its create call to:
- `demo` (busybox): the boot banner arriving on its `console` websocket (the console is opened as
  soon as the VMI is Running, i.e. QEMU is up, so the banner is seen live);
- `desktop`: the desktop drawn on its screen, read over its `vnc` websocket every half second: at
  least DESKTOP_COLOURS distinct colours, which only the terminal's and the browser's anti-aliased
  text bring (the wallpaper and the toolbar alone have ~50; a text console a handful).
After `--idle` seconds the resident memory (VmRSS) of each QEMU process and of the namespace's
lab network (its vde_switch and two dnsmasq) is read from /proc. Says whether QEMU used KVM or TCG,
and the host's load average (the machine is shared: TCG boot times grow with it). Needs the qemu
runtime's Debian packages (see localcluster/qemu/host.py) and builds the images into
var/localcluster/images.

`--debian RUNS` boots the Debian cloud-style image (localcluster/cloudimage.py; built as root on
first use) RUNS times, one at a time, with NoCloud user data setting a password, and measures from
the create call to `login:` on the serial console and to cloud-init's "finished" line (the password
works from then on), and the idle RSS of its QEMU. `--sizes` with no number skips the demo boots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client

from localcluster import cloudimage
from localcluster.demoimage import BANNER
from localcluster.harness import LocalCluster, start_local_cluster
from tests.localcluster_qemu.qemu_helpers import (
    Stream,
    debian_images,
    demo_vmi,
    desktop_images,
    desktop_vmi,
    dnsmasq_pids,
    qemu_pids,
    qemu_switch_dirs,
    rfb_framebuffer,
    switch_pids,
)

VMI = ("kubevirt.io", "v1")
DESKTOP_COLOURS = 500
POLL_SECONDS = 0.5


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def accelerator(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return args[args.index(b"-accel") + 1].decode() if b"-accel" in args else "?"


def distinct_colours(pixels: bytes) -> int:
    return len(set(memoryview(pixels).cast("I")))


async def desktop_drawn(cluster: LocalCluster, ns: str, name: str, created: float) -> float:
    """Seconds from `created` to the first screen with the desktop's windows and their text."""
    while True:
        stream = await Stream.open(
            cluster.url, cluster.token("admin"), cluster.ssl_context(), ns, name, "vnc"
        )
        try:
            _, _, pixels = await rfb_framebuffer(stream)
        finally:
            await stream.close()
        seen = time.monotonic()
        if distinct_colours(pixels) >= DESKTOP_COLOURS:
            return seen - created
        if seen - created > 300:
            raise RuntimeError(f"{name}: no desktop after 300 s ({distinct_colours(pixels)} colours)")
        await asyncio.sleep(POLL_SECONDS)


async def boot_one(
    cluster: LocalCluster, custom: Any, ns: str, name: str, created: float, image: str
) -> float:
    while True:
        obj = await asyncio.to_thread(
            custom.get_namespaced_custom_object, *VMI, ns, "virtualmachineinstances", name
        )
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Failed":
            raise RuntimeError(f"{name} failed: {obj['status']}")
        if phase == "Running":
            break
        await asyncio.sleep(0.05)
    if image == "desktop":
        return await desktop_drawn(cluster, ns, name, created)
    stream = await Stream.open(
        cluster.url, cluster.token("admin"), cluster.ssl_context(), ns, name, "console"
    )
    try:
        await stream.read_until(f"{BANNER} {name} ".encode(), 300)
    finally:
        await stream.close()
    return time.monotonic() - created


async def warm_up(cluster: LocalCluster) -> None:
    """One VM up to Running, so the one-off KVM probe of a fresh server is not in the first timing."""
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-warm-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", demo_vmi("warm"))
    while (
        custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "warm").get("status") or {}
    ).get("phase") not in ("Running", "Failed"):
        await asyncio.sleep(0.1)
    core.delete_namespace(ns)
    await asyncio.sleep(2)


def vmi_of(image: str, name: str) -> dict[str, Any]:
    return desktop_vmi(name) if image == "desktop" else demo_vmi(name)


async def run_size(cluster: LocalCluster, size: int, idle: float, image: str) -> dict[str, Any]:
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-vm-{size}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    names = [f"vm{i + 1}" for i in range(size)]
    try:
        starts = {}
        for name in names:
            starts[name] = time.monotonic()
            custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", vmi_of(image, name))
        times = await asyncio.gather(*(boot_one(cluster, custom, ns, n, starts[n], image) for n in names))
        await asyncio.sleep(idle)
        pids = [pid for n in names for pid in qemu_pids(f"{ns}/{n}")]
        socket_dirs = qemu_switch_dirs(f"{ns}/{names[0]}")
        network = switch_pids(socket_dirs) + dnsmasq_pids(socket_dirs)
        return {
            "image": image,
            "load": os.getloadavg()[0],
            "size": size,
            "boot_s": sorted(times),
            "rss_mib": [rss_mib(p) for p in pids],
            "network_rss_mib": [rss_mib(p) for p in network],
            "accel": accelerator(pids[0]) if pids else "?",
        }
    finally:
        core.delete_namespace(ns)
        await asyncio.sleep(2)


async def debian_boot(cluster: LocalCluster, idle: float) -> dict[str, Any]:
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-debian-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    user_data = "#cloud-config\npassword: bench-Pa55word\nchpasswd: {expire: false}\n"
    body = demo_vmi("debian", image=cloudimage.REFERENCE, memory="512Mi", user_data=user_data)
    try:
        created = time.monotonic()
        custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", body)
        while True:
            vmi = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "debian")
            phase = (vmi.get("status") or {}).get("phase")
            if phase == "Running":
                break
            if phase == "Failed":
                raise RuntimeError(f"the Debian VMI failed: {vmi['status']}")
            await asyncio.sleep(0.05)
        stream = await Stream.open(
            cluster.url, cluster.token("admin"), cluster.ssl_context(), ns, "debian", "console"
        )
        try:
            await stream.read_until(b"login: ", 1200)
            login = time.monotonic() - created
            await stream.read_until(b" finished at ", 1200)
            finished = time.monotonic() - created
        finally:
            await stream.close()
        await asyncio.sleep(idle)
        pids = qemu_pids(f"{ns}/debian")
        return {
            "login_s": login,
            "cloud_init_s": finished,
            "rss_mib": rss_mib(pids[0]),
            "accel": accelerator(pids[0]),
        }
    finally:
        core.delete_namespace(ns)
        await asyncio.sleep(2)


def report(result: dict[str, Any]) -> str:
    boot, rss = result["boot_s"], result["rss_mib"]
    target = "desktop on screen" if result["image"] == "desktop" else "banner"
    return (
        f"{result['image']}: {result['size']} VM(s) at once [{result['accel']}, load {result['load']:.1f}]: "
        f"create→{target} "
        f"median {statistics.median(boot):.1f} s, max {max(boot):.1f} s (all: "
        f"{', '.join(f'{t:.1f}' for t in boot)}); idle RSS per QEMU median {statistics.median(rss):.0f} MiB "
        f"(max {max(rss):.0f}); lab network (vde_switch, 2 dnsmasq) {sum(result['network_rss_mib']):.1f} MiB"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[1, 4], help="VMs started at once (default 1 4)"
    )
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds idle before reading RSS (default 10)"
    )
    parser.add_argument(
        "--image", choices=["demo", "desktop"], default="demo", help="which demo image (default demo)"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat each size (default 1)")
    parser.add_argument(
        "--debian", type=int, default=0, metavar="RUNS", help="boots of the Debian cloud image (default 0)"
    )
    args = parser.parse_args()
    images = desktop_images()
    if args.debian:
        debian_images()  # into the same store
    with (
        tempfile.TemporaryDirectory(prefix="vm-boot-bench-") as state,
        start_local_cluster(Path(state), runtime="qemu", images=images) as cluster,
    ):
        await warm_up(cluster)
        for size in args.sizes:
            for _ in range(args.runs):
                print(report(await run_size(cluster, size, args.idle, args.image)), flush=True)
        for _ in range(args.debian):
            boot = await debian_boot(cluster, args.idle)
            print(
                f"Debian cloud image [{boot['accel']}, load {os.getloadavg()[0]:.1f}]: create→login prompt "
                f"{boot['login_s']:.1f} s, create→cloud-init finished {boot['cloud_init_s']:.1f} s; "
                f"idle RSS of its QEMU {boot['rss_mib']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
