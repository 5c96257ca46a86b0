"""The tools container image: Debian's static busybox as an OCI image layout, built with umoci.

`python -m localcluster build-tools-image --output DIR [--tag 1]` writes `DIR/tools` (an OCI layout,
tag `1`): busybox-static's `/bin/busybox` with its applets linked (sh, ping, ip, nslookup, wget, nc,
vi, ...), `/etc/passwd` with root and a `student` user (uid 1000), Cmd `sh`. The demo lab and the
tests run it; `umoci` builds every layer, so the layout is what a registry would serve.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
# What the demo lab names it: resolved by its last path component (`tools`, tag `1`) in the local
# cluster's `--container-images` folder (localcluster/containers/images.py).
TOOLS_REFERENCE = "registry.localcluster.test/laborchestrator/tools:1"
# The tools image runs until stopped: a shell loop that ends on SIGTERM (PID 1 ignores signals it
# has no handler for), so a lab's container machine needs no command of its own.
KEEP_RUNNING = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
PACKAGES = {"umoci": "umoci", "busybox": "busybox-static"}


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)  # noqa: S603 - fixed tools


def missing_packages() -> list[str]:
    missing = {pkg for exe, pkg in PACKAGES.items() if shutil.which(exe) is None}
    if not BUSYBOX.exists() or not is_static_elf(BUSYBOX):
        missing.add("busybox-static")  # Debian's dynamic busybox would need the host's libc inside
    return sorted(missing)


def is_static_elf(path: Path) -> bool:
    """An ELF64 executable without a PT_INTERP program header needs no dynamic loader."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    entsize = int.from_bytes(data[0x36:0x38], "little")
    count = int.from_bytes(data[0x38:0x3A], "little")
    pt_interp = 3
    return all(
        int.from_bytes(data[phoff + i * entsize : phoff + i * entsize + 4], "little") != pt_interp
        for i in range(count)
    )


def build(output: Path, name: str = "tools", tag: str = "1") -> Path:
    """Build `output/name` afresh (a second build replaces the first); returns the layout's path."""
    layout = output / name
    output.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(layout, ignore_errors=True)
    _run("umoci", "init", "--layout", str(layout))
    with tempfile.TemporaryDirectory(prefix="tools-image-") as work:
        bundle = Path(work) / "bundle"
        _run("umoci", "new", "--image", f"{layout}:{tag}")
        _run("umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle))
        rootfs = bundle / "rootfs"
        for folder in ("bin", "etc", "tmp", "root", "home/student", "proc", "sys", "dev"):
            (rootfs / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        listing = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)  # noqa: S603
        applets = listing.stdout.split()
        for applet in applets:
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nstudent:x:1000:1000:student:/home/student:/bin/sh\n"
        )
        (rootfs / "etc" / "group").write_text("root:x:0:\nstudent:x:1000:\n")
        (rootfs / "tmp").chmod(0o1777)
        _run("umoci", "repack", "--image", f"{layout}:{tag}", str(bundle))
    _run(
        "umoci",
        "config",
        "--image",
        f"{layout}:{tag}",
        "--config.cmd",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        KEEP_RUNNING,
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/",
    )
    _run("umoci", "gc", "--layout", str(layout))
    return layout


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster build-tools-image")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tag", default="1")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print("build-tools-image needs: apt-get install --no-install-recommends " + " ".join(missing))
        return 1
    print(build(args.output, tag=args.tag))
    return 0
