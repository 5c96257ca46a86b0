"""Where the qemu runtime's port-forwards dial from: the lab network's own network namespace.

virt-api dials the VMI's address from the pod network (pkg/virt-api/rest/dialers.go). Here the lab
segment of a namespace is its `vde_switch`, which nothing on the host can reach; its host side is a
network namespace of its own holding the segment's gateway (`localcluster/qemu/network.py`). A dial
runs a small helper inside that network namespace (`nsenter`, the command `LabNetwork.enter_command`
gives), which connects to the guest and passes the connected socket back over a socket pair
(SCM_RIGHTS); from then on the runtime holds an ordinary TCP socket.

That namespace has no route beyond the segment, no forwarding and nothing listening besides the
lab's DHCP and DNS servers: guests reach neither the host, nor another lab, nor the internet
through it, and a dial reaches only the lab's own guests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

from localcluster.runtimes.base import DialFailed

DIAL_SECONDS = 30.0

# Runs inside the lab network's namespace: connect, then hand the socket to the runtime.
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


async def dial(enter: list[str], address: str, port: int) -> socket.socket:
    """A TCP connection from the segment to `address:port`; raises DialFailed as Go words it."""
    ours, theirs = socket.socketpair()
    try:
        helper = await asyncio.create_subprocess_exec(
            *enter,
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
    raise DialFailed(f"dial tcp {address}:{port}: {err.decode(errors='replace').strip()[-300:] or 'failed'}")
