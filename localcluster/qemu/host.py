"""What this machine offers the qemu runtime: the system tools, and a usable accelerator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# executable -> the Debian package that ships it
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "vde_switch": "vde2",
    "genisoimage": "genisoimage",
    # The lab network's host side (localcluster/qemu/network.py).
    "dnsmasq": "dnsmasq-base",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
}
# A kernel under working KVM prints its first line well within a second; TCG would need ~6 s.
KVM_PROBE_SECONDS = 3.0


class ToolsMissing(Exception):
    """Some system packages are missing; the message names them for `apt-get install`."""


def find_tools() -> dict[str, str]:
    """Paths of the tools the runtime runs; raise naming the Debian packages of missing ones."""
    found = {exe: shutil.which(exe) for exe in TOOLS}
    missing = sorted({TOOLS[exe] for exe, path in found.items() if path is None})
    if missing:
        raise ToolsMissing(
            "the qemu runtime needs system packages: apt-get install --no-install-recommends "
            + " ".join(missing)
        )
    return {exe: path for exe, path in found.items() if path}


def kvm_openable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


async def _probe_prints(cmd: list[str], needle: bytes, seconds: float) -> bool:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    seen = b""
    try:
        async with asyncio.timeout(seconds):
            assert proc.stdout is not None
            while needle not in seen:
                chunk = await proc.stdout.read(4096)
                if not chunk:
                    break
                seen = seen[-4096:] + chunk
    except TimeoutError:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    return needle in seen


async def detect_accelerator(qemu: str, probe_kernel: Path | None) -> str:
    """`kvm` if a guest really runs under KVM here, else `tcg`.

    Opening /dev/kvm is not enough: on some hosts (this project's CI machines) KVM starts the firmware
    but a Linux guest then hangs without a line of output. So when a kernel is at hand, boot it for a
    few seconds and wait for its first console line; `LOCALCLUSTER_QEMU_ACCEL=kvm|tcg` overrides.
    """
    forced = os.environ.get("LOCALCLUSTER_QEMU_ACCEL", "").strip()
    if forced in ("kvm", "tcg"):
        return forced
    if not kvm_openable():
        return "tcg"
    base = [
        qemu,
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        "128",
    ]
    if probe_kernel is not None:
        cmd = [*base, "-serial", "stdio", "-kernel", str(probe_kernel), "-append", "console=ttyS0 panic=-1"]
        needle = b"Linux version"
    else:
        # Without a kernel, SeaBIOS's debug port is the next best sign of life.
        cmd = [*base, "-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
        needle = b"Running on KVM"
    works = await _probe_prints(cmd, needle, KVM_PROBE_SECONDS)
    log.info(
        "KVM %s on this host; using %s",
        "works" if works else "does not run guests",
        "kvm" if works else "tcg",
    )
    return "kvm" if works else "tcg"
