"""Where the qemu runtime's port-forwards dial from: a private network namespace on the lab segment.

virt-api dials the VMI's address from the pod network (pkg/virt-api/rest/dialers.go). Here the lab
segment of a namespace is its `vde_switch`, which nothing on the host can reach. So, per namespace,
on its first port-forward, an endpoint joins the segment: a process in a new user and network
namespace (`unshare`, so no root is needed) holding a tap device `pf0` with one address of the
segment's subnet, plugged into the switch by `vde_plug2tap`. A dial runs a small helper inside that
network namespace (`nsenter`), which connects to the guest and passes the connected socket back over a
socket pair (SCM_RIGHTS); from then on the runtime holds an ordinary TCP socket.

What it cannot do: the endpoint's namespace has `pf0` and loopback only, no route beyond the
subnet, no forwarding, and nothing listening. Guests see one more address on their segment that
answers ARP and refuses every connection; they reach neither the host, nor another lab, nor the
internet through it.

The process holds what ends it: SIGTERM when the server dies (`setpriv --pdeathsig`, set after
entering the namespaces, which would otherwise clear it), a pidfile for the next server's clean-up,
and the namespace (with its tap) vanishes with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

from localcluster.qemu.process import PidRegistry, spawn, tail, terminate
from localcluster.runtimes.base import DialFailed

READY_SECONDS = 10.0
DIAL_SECONDS = 30.0
TAP = "pf0"
# The name the endpoint's address is allocated under in the namespace's NamespaceNetwork: never a
# VMI's name (those are DNS subdomains).
ADDRESS_OWNER = "<portforward>"

# Runs inside the endpoint's network namespace: connect, then hand the socket to the runtime.
_DIAL_HELPER = r"""
import errno, socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
try:
    target = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=float(sys.argv[4]))
except TimeoutError:
    channel.sendall(b"%d" % errno.ETIMEDOUT)
except OSError as error:
    channel.sendall(b"%d" % (error.errno or errno.EIO))
else:
    socket.send_fds(channel, [b"0"], [target.fileno()])
"""


class EndpointError(Exception):
    pass


class SegmentEndpoint:
    def __init__(self, namespace: str, address: ipaddress.IPv4Interface, log_path: Path) -> None:
        self.namespace = namespace
        self.address = address
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._tools: dict[str, str] = {}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(
        self, tools: dict[str, str], switch_folder: Path, registry: PidRegistry, run_dir: Path
    ) -> None:
        self._tools = tools
        setup = (
            f"ip link set lo up && ip tuntap add dev {TAP} mode tap && "
            f"ip addr add {self.address} dev {TAP} && ip link set {TAP} up && "
            f'exec "$0" "$@"'
        )
        self.proc = await spawn(
            [
                tools["unshare"],
                "--user",
                "--map-root-user",
                "--net",
                "--",
                tools["setpriv"],
                "--pdeathsig",
                "TERM",
                "--",
                "sh",
                "-c",
                setup,
                tools["vde_plug2tap"],
                "-s",
                str(switch_folder),
                TAP,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr_path=self.log_path,
        )
        registry.record(self.proc.pid, str(self.log_path), run_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while not await self._ready():
            if self.proc.returncode is not None or loop.time() > deadline:
                await self.stop(registry)
                raise EndpointError(
                    f"the port-forward endpoint of {self.namespace} did not start: {tail(self.log_path)}"
                )
            await asyncio.sleep(0.05)

    def _enter(self) -> list[str]:
        assert self.proc is not None
        return [
            self._tools["nsenter"],
            f"--target={self.proc.pid}",
            "--user",
            "--net",
            "--preserve-credentials",
            "--",
        ]

    async def _ready(self) -> bool:
        """The tap has its address and vde_plug2tap runs (it replaced the shell: its name shows)."""
        assert self.proc is not None
        try:
            command = Path(f"/proc/{self.proc.pid}/comm").read_text().strip()
        except OSError:
            return False
        return command.startswith("vde_plug2tap")

    async def dial(self, address: str, port: int) -> socket.socket:
        """A TCP connection from the segment to `address:port`; raises DialFailed as Go words it."""
        if not self.running:
            raise DialFailed(f"dial tcp {address}:{port}: connect: network is unreachable")
        ours, theirs = socket.socketpair()
        try:
            helper = await asyncio.create_subprocess_exec(
                *self._enter(),
                sys.executable,
                "-I",
                "-S",
                "-c",
                _DIAL_HELPER,
                str(theirs.fileno()),
                address,
                str(port),
                str(DIAL_SECONDS),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            theirs.close()
            _, err = await helper.communicate()
            ours.setblocking(False)
            try:
                message, fds, _, _ = socket.recv_fds(ours, 16, 1)
            except BlockingIOError:
                message, fds = b"", []
        finally:
            theirs.close()
            ours.close()
        if fds:
            return socket.socket(fileno=fds[0])
        code = int(message) if message.isdigit() else 0
        if code:
            raise DialFailed.from_os_error(address, port, OSError(code, os.strerror(code)))
        raise DialFailed(
            f"dial tcp {address}:{port}: {err.decode(errors='replace').strip()[-300:] or 'failed'}"
        )

    async def stop(self, registry: PidRegistry) -> None:
        if self.proc is not None:
            await terminate(self.proc)
            registry.forget(self.proc.pid)
            self.proc = None
        with contextlib.suppress(OSError):
            self.log_path.unlink()
