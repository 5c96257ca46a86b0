"""The `none` runtime: no guest at all, phases advance on timers.

For fast orchestration tests: a VMI goes Scheduling → Scheduled → Running `phase_delay` seconds apart
(default 20 ms) and gets the next free address of its namespace's subnet. Stopping is immediate,
unless the VMI sets `terminationGracePeriodSeconds`: then the guest takes that long (at most 60 s),
which is how a test holds a namespace in `Terminating`. Console and VNC are served
by in-process stand-ins (see `fakeguest.py`) over an in-memory stream pair (`localcluster/pipes.py`),
so websocket relays can be tested end to end without QEMU. A port-forward to port 22 reaches an SSH
server that trusts the keys the VMI's cloud-init user data gives (`fakessh.py`) and runs commands in
a sandbox per guest; every other port refuses the connection.

Images: every containerDisk reference can be pulled, unless the runtime was given an image list
(`--image-list FILE`, one reference per line, `#` comments): then only those can, and any other
fails to pull as from a registry that does not have it (ErrImagePull).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster.pipes import stream_pipe
from localcluster.qemu.cloudinit import CloudInitError, nocloud_data
from localcluster.runtimes import fakeguest, fakessh
from localcluster.runtimes.base import (
    DialFailed,
    NamespaceNetwork,
    PhaseReporter,
    PhaseUpdate,
    Runtime,
    StreamKind,
    StreamUnavailable,
    docker_reference,
    image_not_found,
    mac_for,
)

NODE_NAME = "localcluster"


@dataclass
class _Guest:
    network: NamespaceNetwork
    vmi: dict[str, Any]
    boot: asyncio.Task[None] | None = None
    running: bool = False
    paused: bool = False
    streams: list[asyncio.Task[None]] = field(default_factory=list)
    # Seconds the stand-in guest takes to shut down (see `stop`).
    shutdown_seconds: float = 0.0
    ssh: fakessh.GuestShell | None = None


class NoneRuntime(Runtime):
    name = "none"

    def __init__(
        self,
        report: PhaseReporter,
        phase_delay: float = 0.02,
        image_list: Path | str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(report, **options)
        self.phase_delay = phase_delay
        self._guests: dict[tuple[str, str], _Guest] = {}
        self.images: set[str] | None = None
        if image_list is not None:
            lines = Path(image_list).read_text().splitlines()
            self.images = {
                docker_reference(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()
            }

    def image_pull_error(self, reference: str) -> str | None:
        if self.images is None or docker_reference(reference) in self.images:
            return None
        return image_not_found(reference)

    async def start(self, vmi: dict[str, Any], network: NamespaceNetwork) -> None:
        key = (vmi["metadata"]["namespace"], vmi["metadata"]["name"])
        # A VMI that sets terminationGracePeriodSeconds gets a guest that ignores ACPI shutdown, so
        # stopping it takes the full grace period, as virt-launcher waits before killing QEMU. Unset
        # means immediate here (KubeVirt's default is 30 s, too slow for tests).
        grace = vmi["spec"].get("terminationGracePeriodSeconds") or 0
        guest = _Guest(network, vmi, shutdown_seconds=min(float(grace), 60.0))
        self._guests[key] = guest
        guest.boot = asyncio.create_task(self._boot(key, guest))

    async def _boot(self, key: tuple[str, str], guest: _Guest) -> None:
        namespace, name = key
        for phase in ("Scheduling", "Scheduled"):
            await asyncio.sleep(self.phase_delay)
            self.report(namespace, name, PhaseUpdate(phase, node=NODE_NAME))
        await asyncio.sleep(self.phase_delay)
        ip = guest.network.allocate(name)
        guest.running = True
        self.report(namespace, name, PhaseUpdate("Running", ip=str(ip), mac=mac_for(ip), node=NODE_NAME))

    async def stop(self, namespace: str, name: str) -> None:
        guest = self._guests.get((namespace, name))
        if guest is None:
            return
        if guest.running and guest.shutdown_seconds:
            await asyncio.sleep(guest.shutdown_seconds)
        self._guests.pop((namespace, name), None)
        if guest.ssh is not None:
            await guest.ssh.close()
        for task in [guest.boot, *guest.streams]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        guest.network.release(name)

    async def pause(self, namespace: str, name: str) -> None:
        self._guest(namespace, name).paused = True

    async def unpause(self, namespace: str, name: str) -> None:
        self._guest(namespace, name).paused = False

    def _guest(self, namespace: str, name: str) -> _Guest:
        guest = self._guests.get((namespace, name))
        if guest is None or not guest.running:
            raise StreamUnavailable("VMI is not running")
        return guest

    async def open_stream(
        self, namespace: str, name: str, kind: StreamKind
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        guest = self._guest(namespace, name)
        ours, (guest_reader, guest_writer) = stream_pipe()
        serve = fakeguest.serve_console if kind == "console" else fakeguest.serve_vnc
        task = asyncio.create_task(serve(guest_reader, guest_writer, f"{namespace}/{name}"))
        guest.streams = [t for t in guest.streams if not t.done()] + [task]
        return ours

    async def open_port(
        self, namespace: str, name: str, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        guest = self._guests.get((namespace, name))
        if guest is None or not guest.running or port != fakessh.SSH_PORT:
            raise DialFailed(f"dial tcp {address}:{port}: connect: connection refused")
        if guest.ssh is None:
            guest.ssh = fakessh.GuestShell(
                f"{namespace}/{name}", guest.vmi["spec"].get("hostname") or name, self._user_data(guest.vmi)
            )
        return await guest.ssh.connect()

    def _user_data(self, vmi: dict[str, Any]) -> str:
        for volume in vmi["spec"].get("volumes") or []:
            if "cloudInitNoCloud" in volume:
                with contextlib.suppress(CloudInitError, KeyError, ValueError):
                    return nocloud_data(vmi, volume["cloudInitNoCloud"], self.read_secret).user_data
        return ""

    async def screenshot(self, namespace: str, name: str) -> bytes:
        self._guest(namespace, name)
        return fakeguest.png()

    async def shutdown(self) -> None:
        for namespace, name in list(self._guests):
            await self.stop(namespace, name)
