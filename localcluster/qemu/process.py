"""Supervised child processes (QEMU, vde_switch), their command lines, and crash clean-up.

Every child is started in its own session (a Ctrl-C meant for the server does not hit it halfway
through shutdown) with the kernel's parent-death signal set, so it gets SIGTERM the moment the
server dies, however it dies. As a second line of defence each child has a pidfile in the state
dir; the next server start kills any recorded process still alive whose command line still names
the old run dir (so a recycled pid of an unrelated process is never touched).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.harness import die_with_parent

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0


async def spawn(
    cmd: list[str],
    *,
    stdin: int | None,
    stdout: int | None,
    stderr_path: Path,
) -> asyncio.subprocess.Process:
    with open(stderr_path, "wb") as stderr:
        return await asyncio.create_subprocess_exec(
            # preexec_fn only makes one prctl call, which is safe between fork and exec.
            *cmd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


async def terminate(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is reaped."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


class PidRegistry:
    """Pidfiles of our children, each naming the server that owns it.

    Several servers may share the folder (tests run many at once), so a record is only acted on when
    its owner server is gone: same pid with the same start time means the owner still runs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._owner = {"owner_pid": os.getpid(), "owner_start": _start_time(os.getpid())}

    def record(self, pid: int, marker: str, run_dir: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": pid, "marker": marker, "run_dir": str(run_dir), **self._owner}
        (self.folder / f"{pid}.json").write_text(json.dumps(record))

    def forget(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{pid}.json").unlink()

    def reap_stale(self) -> list[int]:
        """Kill what a previous, crashed server left running; return the pids killed."""
        killed: list[int] = []
        if not self.folder.is_dir():
            return killed
        run_dirs: set[str] = set()
        for pidfile in self.folder.glob("*.json"):
            try:
                record = json.loads(pidfile.read_text())
                pid, marker = int(record["pid"]), str(record["marker"])
                owner_pid, owner_start = int(record["owner_pid"]), str(record["owner_start"])
            except (OSError, ValueError, KeyError, TypeError):
                pidfile.unlink(missing_ok=True)
                continue
            if owner_start and _start_time(owner_pid) == owner_start:
                continue  # its server is alive (maybe another test session): not ours to touch
            run_dirs.add(str(record["run_dir"]))
            if marker and marker in _cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    log.warning("killed stale process %d left by a previous server", pid)
            pidfile.unlink(missing_ok=True)
        for run_dir in run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)
        return killed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- the QEMU command line ---------------------------------------------------------------------


@dataclass(frozen=True)
class Drive:
    path: Path
    format: str  # qcow2 or raw
    bus: str = "virtio"  # virtio, sata or scsi
    cdrom: bool = False
    readonly: bool = False
    boot_index: int | None = None


@dataclass(frozen=True)
class Machine:
    """Everything that decides one VM's QEMU command line."""

    name: str
    accel: str
    cores: int
    memory_mib: int
    qmp: Path
    serial: Path | None = None
    vnc: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    drives: tuple[Drive, ...] = ()
    switch: Path | None = None
    mac: str = ""
    tablets: tuple[str, ...] = ()  # the bus of each tablet: usb or virtio
    extra: tuple[str, ...] = field(default=())


def qemu_command(qemu: str, m: Machine) -> list[str]:
    cmd = [qemu, "-name", f"guest={m.name}", "-accel", m.accel]
    if m.accel == "kvm":
        cmd += ["-cpu", "host"]
    cmd += [
        "-smp",
        str(m.cores),
        "-m",
        str(m.memory_mib),
        # No default devices: the VMI spec decides what the guest has.
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-qmp",
        f"unix:{m.qmp},server=on,wait=off",
    ]
    if m.vnc is not None:
        cmd += ["-vga", "std", "-vnc", f"unix:{m.vnc}"]
    if m.serial is not None:
        cmd += ["-chardev", f"socket,id=ser0,path={m.serial},server=on,wait=off", "-serial", "chardev:ser0"]
    if m.kernel is not None:
        cmd += ["-kernel", str(m.kernel), "-append", m.cmdline]
        if m.initrd is not None:
            cmd += ["-initrd", str(m.initrd)]
    if any(d.bus == "scsi" for d in m.drives):
        cmd += ["-device", "virtio-scsi-pci,id=scsi0"]
    for i, d in enumerate(m.drives):
        drive = f"if=none,id=drive{i},file={d.path},format={d.format}"
        if d.readonly or d.cdrom:
            drive += ",readonly=on"
        cmd += ["-drive", drive]
        device = {
            ("virtio", False): "virtio-blk-pci",
            ("sata", False): "ide-hd",
            ("scsi", False): "scsi-hd",
        }.get((d.bus, d.cdrom), "scsi-cd" if d.bus == "scsi" else "ide-cd")
        if d.cdrom and d.bus == "virtio":
            device = "ide-cd"  # KubeVirt rejects virtio cdroms; be lenient and use IDE
        opts = f"{device},drive=drive{i}"
        if d.boot_index is not None:
            opts += f",bootindex={d.boot_index}"
        cmd += ["-device", opts]
    if "usb" in m.tablets:
        cmd += ["-device", "qemu-xhci,id=usb"]
    for i, bus in enumerate(m.tablets):
        tablet = f"usb-tablet,bus=usb.0,id=input{i}" if bus == "usb" else f"virtio-tablet-pci,id=input{i}"
        cmd += ["-device", tablet]
    if m.switch is not None:
        # romfile= drops the iPXE option ROM: no network boot, and a second less of TCG boot time.
        cmd += [
            "-netdev",
            f"vde,id=net0,sock={m.switch}",
            "-device",
            f"virtio-net-pci,netdev=net0,mac={m.mac},romfile=",
        ]
    return cmd + list(m.extra)
