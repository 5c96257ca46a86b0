"""The lab network: one `vde_switch` per namespace, a private L2 segment for its VMs.

Two switches share nothing, so VMs in different namespaces cannot reach each other at all, the
local equivalent of the same-namespace-only NetworkPolicy. Addresses come from the cluster's
`NamespaceNetwork` (one /24 per namespace) and are given to the guest on its kernel command line.

The switch runs in the foreground with its stdin on a pipe we hold: vde_switch exits on EOF on
stdin, so it ends with the server even if the server is killed outright.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from localcluster.qemu.process import PidRegistry, spawn, tail, terminate

READY_SECONDS = 5.0


class SwitchError(Exception):
    pass


class LabSwitch:
    def __init__(self, namespace: str, folder: Path) -> None:
        self.namespace = namespace
        self.folder = folder  # the switch's socket dir: QEMU's `-netdev vde,sock=` points here
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, vde_switch: str, registry: PidRegistry, run_dir: Path) -> None:
        log_path = self.folder.with_suffix(".log")
        self.proc = await spawn(
            [vde_switch, "-s", str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr_path=log_path,
        )
        registry.record(self.proc.pid, str(self.folder), run_dir)
        ctl = self.folder / "ctl"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while not ctl.exists():
            if self.proc.returncode is not None or loop.time() > deadline:
                await self.stop(registry)
                raise SwitchError(f"vde_switch for {self.namespace} did not start: {tail(log_path)}")
            await asyncio.sleep(0.02)

    async def stop(self, registry: PidRegistry) -> None:
        if self.proc is not None:
            await terminate(self.proc)
            registry.forget(self.proc.pid)
            self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.with_suffix(".log").unlink(missing_ok=True)
