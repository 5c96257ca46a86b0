"""The `none` runtime's guest SSH server: what a port-forward to port 22 of a simulated VMI reaches.

An SSH server (asyncssh, the protocol's library) that trusts what cloud-init would have set up in a
real image: the host key from the user data's `ssh_keys` (`ed25519_private`), and for each entry of
`users` its `ssh_authorized_keys`; public-key authentication only. Commands run in a sandbox that
stands in for the guest: busybox's `sh` in a private root (a folder with the host's static
busybox, `/tmp`, `/etc/hostname`), a new user, mount, PID, UTS and network namespace (no network at
all), as root of that user namespace. The folder lives as long as the VMI, so what one command
writes the next one sees, and a new VMI starts empty. Without a static busybox or user namespaces,
commands fail with exit status 127 and a message naming what is missing.

This is a stand-in for tests and `make run` without QEMU, not an isolation boundary for untrusted
code: the commands come from the lab's authors (check scripts), never from students.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import asyncssh
import yaml

log = logging.getLogger(__name__)

SSH_PORT = 22
EXIT_NOT_FOUND = 127
SANDBOX_DEVICES = ("null", "zero", "random", "urandom")
# Runs as root of the new user namespace, in its own mount and PID namespace: the host's device
# nodes bound in, /proc of the new PID namespace, the guest's host name, then the command chrooted.
SANDBOX_SETUP = r"""
root="$1"; command="$2"; bb="$root/bin/busybox"
for device in null zero random urandom; do
    "$bb" mount --bind "/dev/$device" "$root/dev/$device" || exit 126
done
"$bb" mount -t proc proc "$root/proc" || exit 126
"$bb" hostname "$("$bb" cat "$root/etc/hostname")"
exec "$bb" chroot "$root" /bin/sh -c 'cd /root && eval "$1"' sh "$command"
"""


def cloud_config(user_data: str) -> dict[str, Any]:
    """The `#cloud-config` mapping of a NoCloud user data, or {} for anything else."""
    if not user_data.lstrip().startswith("#cloud-config"):
        return {}
    with contextlib.suppress(yaml.YAMLError):
        config = yaml.safe_load(user_data)
        if isinstance(config, dict):
            return config
    return {}


def authorized_keys(config: dict[str, Any]) -> dict[str, list[asyncssh.SSHKey]]:
    """User name -> the public keys cloud-init would put in its authorized_keys."""
    keys: dict[str, list[asyncssh.SSHKey]] = {}
    for user in config.get("users") or []:
        if not isinstance(user, dict) or not isinstance(user.get("name"), str):
            continue
        for line in user.get("ssh_authorized_keys") or []:
            with contextlib.suppress(asyncssh.KeyImportError, TypeError, ValueError):
                keys.setdefault(user["name"], []).append(asyncssh.import_public_key(str(line)))
    return keys


def host_key(config: dict[str, Any]) -> asyncssh.SSHKey:
    """cloud-init's `ssh_keys.ed25519_private`, or a key of its own (an image's first boot makes one)."""
    private = (config.get("ssh_keys") or {}).get("ed25519_private") if isinstance(config, dict) else None
    if isinstance(private, str):
        with contextlib.suppress(asyncssh.KeyImportError, ValueError):
            return asyncssh.import_private_key(private)
    return asyncssh.generate_private_key("ssh-ed25519")


class _GuestSshServer(asyncssh.SSHServer):
    def __init__(self, keys: dict[str, list[asyncssh.SSHKey]]) -> None:
        self._keys = keys

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        wanted = key.get_fingerprint()  # the key itself, whatever comment it carries
        return any(known.get_fingerprint() == wanted for known in self._keys.get(username, []))


class GuestShell:
    """One simulated guest's SSH server and the folder its commands run in."""

    def __init__(self, label: str, hostname: str, user_data: str) -> None:
        self.label = label
        self.hostname = hostname
        config = cloud_config(user_data)
        self._keys = authorized_keys(config)
        self._host_key = host_key(config)
        self._root: Path | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the server, as a stream (what the port-forward relays)."""
        ours, theirs = socket.socketpair()
        task = asyncio.create_task(self._serve(theirs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.open_connection(sock=ours)

    async def _serve(self, sock: socket.socket) -> None:
        try:
            connection = await asyncssh.run_server(
                sock,
                server_factory=lambda: _GuestSshServer(self._keys),
                server_host_keys=[self._host_key],
                process_factory=self._run,
                encoding=None,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                login_timeout=30,
            )
        except (asyncssh.Error, OSError, TimeoutError) as error:
            log.info("fake guest %s: SSH connection ended before login: %s", self.label, error)
            sock.close()
            return
        self._connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self._connections.discard(connection)

    def _prepare_root(self) -> tuple[Path, list[str]] | str:
        """The sandbox's folder and the command that runs `sh -c <command>` in it, or why there is none."""
        busybox = shutil.which("busybox")
        unshare = shutil.which("unshare")
        if busybox is None or b"ld-linux" in Path(busybox).read_bytes()[:4096]:
            return (
                "the local cluster's simulated guest needs a static busybox: apt-get install busybox-static"
            )
        if unshare is None:
            return "the local cluster's simulated guest needs unshare: apt-get install util-linux"
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="lcfake-"))
            for folder in ("bin", "dev", "tmp", "etc", "root", "proc", "home"):
                (root / folder).mkdir()
            for device in SANDBOX_DEVICES:
                (root / "dev" / device).touch()
            shutil.copy(busybox, root / "bin" / "busybox")
            # The host's busybox, found on PATH above; no shell.
            listing = subprocess.run(  # noqa: S603
                [busybox, "--list"], capture_output=True, text=True, check=False
            )
            for applet in listing.stdout.split():
                if applet != "busybox":
                    (root / "bin" / applet).symlink_to("busybox")
            (root / "etc" / "hostname").write_text(self.hostname + "\n")
            self._root = root
        own_busybox = str(self._root / "bin" / "busybox")
        namespaces = ["--user", "--map-root-user", "--mount", "--pid", "--fork", "--uts", "--net"]
        return self._root, [
            unshare,
            *namespaces,
            own_busybox,
            "sh",
            "-c",
            SANDBOX_SETUP,
            "sandbox",
            str(self._root),
        ]

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if not command:
            process.stderr.write(b"this simulated guest runs commands only, no interactive shell\n")
            process.exit(EXIT_NOT_FOUND)
            return
        prepared = self._prepare_root()
        if isinstance(prepared, str):
            process.stderr.write(prepared.encode() + b"\n")
            process.exit(EXIT_NOT_FOUND)
            return
        _, sandbox = prepared
        environment = {"PATH": "/bin", "HOME": "/root", "USER": process.get_extra_info("username") or ""}
        child = await asyncio.create_subprocess_exec(
            *sandbox,
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            start_new_session=True,
        )
        try:
            status = await self._relay(process, child)
        finally:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.wait()
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(status)

    @staticmethod
    async def _relay(process: asyncssh.SSHServerProcess, child: asyncio.subprocess.Process) -> int:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None

        async def feed() -> None:
            assert child.stdin is not None
            with contextlib.suppress(ConnectionError, asyncssh.Error):
                while data := await process.stdin.read(65536):
                    child.stdin.write(data)
                    await child.stdin.drain()
            with contextlib.suppress(ConnectionError):
                child.stdin.close()

        async def pump(source: asyncio.StreamReader, target: Any) -> None:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()

        feeding = asyncio.create_task(feed())
        try:
            await asyncio.gather(pump(child.stdout, process.stdout), pump(child.stderr, process.stderr))
            return await child.wait()
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding

    async def close(self) -> None:
        """The guest is gone: its connections drop (as a powered-off VM's would) and its folder goes."""
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
