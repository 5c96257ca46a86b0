"""Run a script on one machine of an instance, with a time-out: exit status and capped output.

The one interface step checks use (`run_script`). How a machine is reached depends on its kind:

- **VM** (now): KubeVirt's `portforward` subresource to the guest's port 22 (a websocket carrying the
  TCP stream, as `virtctl ssh` uses it; the target comes from labs/cluster.py), then SSH with
  asyncssh as the check user, with the instance's key, trusting only the host key the app generated
  for that machine (both given to the guest by cloud-init, labs/manifests.py). The script goes to
  `sh -s` (or `bash -s`) on stdin: the command line is fixed, so nothing of the script, and nothing a
  student typed, is ever part of it.
- **Container**: `pods/exec` (`v5.channel.k8s.io`, `v4` where the API server is older) running the
  shell with the script on stdin, then the close signal for stdin; the exit status comes on the
  error channel (a metav1.Status, reason NonZeroExitCode with cause ExitCode). Without v5's close
  signal (v4) stdin cannot be ended, so the script goes as `sh -c`'s argument instead: the author's
  text, never a student's. As the container's own user (no sudo step: the image decides).

Every failure leaves as `ExecFailed` with the cluster's or SSH's exact words for staff and plain
words for the student; nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import asyncssh
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from labs import cluster
from labs.exceptions import ClusterError
from labs.manifests import CHECK_USER, CONTAINER_NAME

SSH_PORT = 22
PLAIN_STREAM_PROTOCOL = "plain.kubevirt.io"
# Output kept of a run: the end of stdout (where the FAIL: line is) and of stderr, 64 KiB together.
STDOUT_LIMIT = 48 * 1024
STDERR_LIMIT = 16 * 1024
# Reaching the machine: the port-forward and SSH login together, whatever the script's time-out.
CONNECT_SECONDS = 10.0
# A guest that refuses the connection may still be booting: ask again this long before giving up.
REFUSED_RETRY_SECONDS = 5.0
REFUSED_RETRY_INTERVAL = 0.5
CANCEL_POLL_SECONDS = 0.5
# Passwordless sudo where the image has it (cloud-init grants it to the check user), else the user.
_SHELL_COMMANDS = {
    "sh": "if sudo -n true 2>/dev/null; then exec sudo -n sh -s; fi; exec sh -s",
    "bash": "if sudo -n true 2>/dev/null; then exec sudo -n bash -s; fi; exec bash -s",
}


class Problem(StrEnum):
    NOT_RUNNING = "not_running"  # down, paused, gone or still starting: not the check's failure
    UNREACHABLE = "unreachable"  # SSH refused or timed out
    LOGIN = "login"  # host key or check user refused
    TIMED_OUT = "timed_out"  # the script did not finish in time
    DROPPED = "dropped"  # the connection ended while the script ran
    CLUSTER = "cluster"  # the cluster did not answer or refused us
    CANCELLED = "cancelled"  # the caller gave up (e.g. the instance is stopping)


class ExecFailed(Exception):
    def __init__(self, problem: Problem, detail: str, plain: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail  # exact, for staff
        self.plain = plain  # for the student


@dataclass(frozen=True)
class MachineAccess:
    """How to reach one machine of an instance (built from its InstanceMachine and check key)."""

    namespace: str
    machine: str
    private_key: str
    host_public_key: str
    kind: str = "vm"
    username: str = CHECK_USER


@dataclass(frozen=True)
class ScriptResult:
    exit_status: int
    stdout: str  # the last STDOUT_LIMIT bytes, decoded
    stderr: str  # the last STDERR_LIMIT bytes, decoded
    truncated: bool  # more was written than kept
    seconds: float


CancelCheck = Callable[[], Awaitable[bool]]


async def run_script(
    access: MachineAccess,
    script: str,
    *,
    timeout: float,
    shell: str = "sh",
    cancelled: CancelCheck | None = None,
) -> ScriptResult:
    """Run `script` on the machine; raise ExecFailed when it cannot run to its end.

    `cancelled`, polled while the script runs, ends it early (Problem.CANCELLED) when it says so.
    """
    if shell not in _SHELL_COMMANDS:
        raise ValueError(f"unknown shell {shell!r}")
    runner = _RUNNERS.get(access.kind)
    if runner is None:
        raise ExecFailed(
            Problem.CLUSTER,
            f"Checks cannot run on {access.kind} machines yet.",
            "Checks cannot run on this kind of machine yet. Tell your instructor.",
        )
    work = asyncio.ensure_future(runner(access, script, timeout, _SHELL_COMMANDS[shell]))
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=CANCEL_POLL_SECONDS)
            if done:
                return work.result()
            if cancelled is not None and await cancelled():
                raise ExecFailed(
                    Problem.CANCELLED,
                    "Cancelled: the instance stopped while the check ran.",
                    "The check was cancelled: the lab stopped while it ran.",
                )
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work


# --- VMs: portforward + SSH ------------------------------------------------------------------------


async def _run_over_ssh(access: MachineAccess, script: str, timeout: float, command: str) -> ScriptResult:
    started = time.monotonic()
    async with _open_port_forward(access) as websocket:
        ours, theirs = socket.socketpair()
        bridge = asyncio.create_task(_bridge(websocket, theirs))
        try:
            connection = await _ssh_login(access, ours)
            async with connection:
                return await _execute(access, connection, script, timeout, command, started)
        finally:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await bridge
            theirs.close()


@contextlib.asynccontextmanager
async def _open_port_forward(access: MachineAccess) -> AsyncIterator[ClientConnection]:
    """The port-forward websocket; a refused port is retried for a few seconds (a booting guest)."""
    try:
        target = cluster.portforward_websocket_target(
            namespace=access.namespace, name=access.machine, port=SSH_PORT
        )
    except ClusterError as error:
        raise ExecFailed(Problem.CLUSTER, error.message, error.public_message) from error
    deadline = time.monotonic() + REFUSED_RETRY_SECONDS
    while True:
        try:
            websocket = await connect(
                target.url,
                ssl=target.ssl,
                server_hostname=target.server_hostname,
                additional_headers=target.headers,
                subprotocols=[PLAIN_STREAM_PROTOCOL],  # type: ignore[list-item]
                compression=None,
                proxy=None,
                open_timeout=CONNECT_SECONDS,
                ping_interval=None,
                max_size=None,
            )
            break
        except InvalidStatus as refusal:
            failure = _refusal(access, refusal)
            retry = failure.problem == Problem.UNREACHABLE or "still starting" in failure.plain
            if not retry or time.monotonic() >= deadline:
                raise failure from refusal
            await asyncio.sleep(REFUSED_RETRY_INTERVAL)
        except (InvalidHandshake, OSError, TimeoutError) as error:
            raise ExecFailed(
                Problem.CLUSTER,
                f"Opening the port-forward to {access.machine} failed: {error!r}",
                "The cluster is unavailable right now. Try again in a moment.",
            ) from error
    try:
        yield websocket
    finally:
        await websocket.close()


def _refusal(access: MachineAccess, refusal: InvalidStatus) -> ExecFailed:
    """virt-api's answer before the upgrade (pkg/virt-api/rest/portforward.go, dialers.go)."""
    status = refusal.response.status_code
    try:
        message = json.loads(refusal.response.body or b"{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    detail = f"portforward to {access.namespace}/{access.machine}:{SSH_PORT}: HTTP {status} {message}".strip()
    machine = access.machine
    if status == 409 and "paused" in message:
        return ExecFailed(
            Problem.NOT_RUNNING, detail, f"The machine {machine} is paused: resume the lab first."
        )
    if status in (400, 404, 409):
        return ExecFailed(Problem.NOT_RUNNING, detail, f"The machine {machine} is not running.")
    if status == 500 and "dialing VM" in message:
        if "no route to host" in message or "host is unreachable" in message:
            # Nothing answers for the address yet: a guest still booting (or with its network down).
            return ExecFailed(
                Problem.NOT_RUNNING,
                detail,
                f"The machine {machine} is still starting (it does not answer on the network yet). "
                "Check again in a moment.",
            )
        if "refused" in message:
            plain = (
                f"The check could not reach the machine {machine}: its SSH server refused the connection. "
                "If it has just started, wait a moment and try again."
            )
        else:
            plain = f"The check could not reach the machine {machine}. Try again in a moment."
        return ExecFailed(Problem.UNREACHABLE, detail, plain)
    return ExecFailed(Problem.CLUSTER, detail, "The cluster is unavailable right now. Try again in a moment.")


async def _bridge(websocket: ClientConnection, sock: socket.socket) -> None:
    """Binary frames to the socket and back: asyncssh runs on the other end of the socket pair."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                if isinstance(message, bytes):
                    await loop.sock_sendall(sock, message)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    async def up() -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while data := await loop.sock_recv(sock, 65536):
                await websocket.send(data)

    await asyncio.gather(down(), up())


async def _ssh_login(access: MachineAccess, sock: socket.socket) -> asyncssh.SSHClientConnection:
    try:
        host_key = asyncssh.import_public_key(access.host_public_key)
        client_key = asyncssh.import_private_key(access.private_key)
    except (asyncssh.KeyImportError, ValueError) as error:
        raise ExecFailed(
            Problem.LOGIN,
            f"The stored SSH keys of {access.machine} cannot be read: {error}",
            "The check cannot log in to this machine. Tell your instructor.",
        ) from error
    try:
        return await asyncssh.run_client(
            sock,
            config=None,  # no ~/.ssh/config of whoever runs the app
            # A socket pair has no peer address: name the machine (only for asyncssh's messages).
            host=access.machine,
            port=SSH_PORT,
            username=access.username,
            client_keys=[client_key],
            known_hosts=([host_key], [], []),
            server_host_key_algs=[host_key.get_algorithm()],
            agent_path=None,
            preferred_auth="publickey",
            connect_timeout=CONNECT_SECONDS,
            login_timeout=CONNECT_SECONDS,
        )
    except (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied) as error:
        raise ExecFailed(
            Problem.LOGIN,
            f"SSH login to {access.machine} as {access.username} refused: {error}",
            f"The check could not log in to the machine {access.machine}. Tell your instructor.",
        ) from error
    except (asyncssh.Error, OSError, TimeoutError) as error:
        raise ExecFailed(
            Problem.UNREACHABLE,
            f"SSH to {access.machine} failed: {error!r}",
            f"The check could not reach the machine {access.machine}. Try again in a moment.",
        ) from error


async def _execute(
    access: MachineAccess,
    connection: asyncssh.SSHClientConnection,
    script: str,
    timeout: float,
    command: str,
    started: float,
) -> ScriptResult:
    stdout, stderr = _Tail(STDOUT_LIMIT), _Tail(STDERR_LIMIT)
    try:
        async with asyncio.timeout(timeout):
            process = await connection.create_process(command, encoding=None)
            process.stdin.write(script.encode())
            process.stdin.write_eof()
            await asyncio.gather(stdout.read_from(process.stdout), stderr.read_from(process.stderr))
            completed = await process.wait()
    except TimeoutError as error:
        raise ExecFailed(
            Problem.TIMED_OUT,
            f"The script did not finish within {timeout:g} s; its session was closed.",
            f"The check did not finish within {timeout:g} seconds.",
        ) from error
    except (asyncssh.Error, OSError) as error:
        raise ExecFailed(
            Problem.DROPPED,
            f"The SSH session to {access.machine} ended while the script ran: {error!r}",
            f"The connection to the machine {access.machine} was lost while the check ran. Try again.",
        ) from error
    if completed.exit_status is None:
        # No exit status: the session ended without one (a signal, or the connection went away).
        signal = completed.exit_signal[0] if completed.exit_signal else "none"
        raise ExecFailed(
            Problem.DROPPED,
            f"The script on {access.machine} ended without an exit status (signal {signal}).",
            f"The connection to the machine {access.machine} was lost while the check ran. Try again.",
        )
    return ScriptResult(
        exit_status=completed.exit_status,
        stdout=stdout.text(),
        stderr=stderr.text(),
        truncated=stdout.truncated or stderr.truncated,
        seconds=time.monotonic() - started,
    )


class _Tail:
    """The last `limit` bytes of a stream; counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def read_from(self, stream: asyncssh.SSHReader) -> None:
        while chunk := await stream.read(65536):
            self.add(chunk)

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


# --- Containers: pods/exec ---------------------------------------------------------------------------

EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
CLOSE_SIGNAL = 255


def _exec_status(payload: bytes) -> int | None:
    """The exit status from the error channel's metav1.Status; None if it carries none."""
    try:
        status = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(status, dict):
        return None
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    return None


def _exec_refusal(access: MachineAccess, refusal: InvalidStatus) -> ExecFailed:
    status = refusal.response.status_code
    try:
        message = json.loads(refusal.response.body or b"{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    detail = f"exec in {access.namespace}/{access.machine}: HTTP {status} {message}".strip()
    if status in (400, 404):
        return ExecFailed(Problem.NOT_RUNNING, detail, f"The machine {access.machine} is not running.")
    return ExecFailed(Problem.CLUSTER, detail, "The cluster is unavailable right now. Try again in a moment.")


async def _run_over_exec(access: MachineAccess, script: str, timeout: float, command: str) -> ScriptResult:
    shell = "bash" if "bash -s" in command else "sh"
    started = time.monotonic()
    stdout, stderr = _Tail(STDOUT_LIMIT), _Tail(STDERR_LIMIT)

    def target_for(argv: list[str]) -> cluster.WebsocketTarget:
        return cluster.pod_exec_websocket_target(
            namespace=access.namespace,
            name=access.machine,
            container=CONTAINER_NAME,
            command=argv,
            stdin=True,
            tty=False,
        )

    async def open_exec(target: cluster.WebsocketTarget):
        """Both attempts (v5 with the script on stdin, else v4 with it as an argument) open alike."""
        return await connect(
            target.url,
            ssl=target.ssl,
            server_hostname=target.server_hostname,
            additional_headers=target.headers,
            subprotocols=EXEC_PROTOCOLS,  # type: ignore[arg-type]
            compression=None,
            proxy=None,
            open_timeout=CONNECT_SECONDS,
            ping_interval=None,
            max_size=None,
        )

    try:
        target = target_for([shell, "-s"])
    except ClusterError as error:
        raise ExecFailed(Problem.CLUSTER, error.message, error.public_message) from error
    try:
        websocket = await open_exec(target)
    except InvalidStatus as refusal:
        raise _exec_refusal(access, refusal) from refusal
    except (InvalidHandshake, OSError, TimeoutError) as error:
        raise ExecFailed(
            Problem.CLUSTER,
            f"Opening pods/exec on {access.machine} failed: {error!r}",
            "The cluster is unavailable right now. Try again in a moment.",
        ) from error
    exit_status: int | None = None
    try:
        async with asyncio.timeout(timeout):
            if websocket.subprotocol == "v5.channel.k8s.io":
                await websocket.send(bytes([STDIN]) + script.encode())
                await websocket.send(bytes([CLOSE_SIGNAL, STDIN]))
            else:
                await websocket.close()
                target = target_for([shell, "-c", script])
                websocket = await open_exec(target)
            async for message in websocket:
                if not isinstance(message, bytes) or not message:
                    continue
                channel, payload = message[0], message[1:]
                if channel == STDOUT:
                    stdout.add(payload)
                elif channel == STDERR:
                    stderr.add(payload)
                elif channel == ERROR:
                    exit_status = _exec_status(payload)
    except TimeoutError as error:
        raise ExecFailed(
            Problem.TIMED_OUT,
            f"The script did not finish within {timeout:g} s; its exec stream was closed.",
            f"The check did not finish within {timeout:g} seconds.",
        ) from error
    except ConnectionClosed as error:
        raise ExecFailed(
            Problem.DROPPED,
            f"The exec stream to {access.machine} ended while the script ran: {error!r}",
            f"The connection to the machine {access.machine} was lost while the check ran. Try again.",
        ) from error
    finally:
        await websocket.close()
    if exit_status is None:
        raise ExecFailed(
            Problem.DROPPED,
            f"The script on {access.machine} ended without an exit status.",
            f"The connection to the machine {access.machine} was lost while the check ran. Try again.",
        )
    return ScriptResult(
        exit_status=exit_status,
        stdout=stdout.text(),
        stderr=stderr.text(),
        truncated=stdout.truncated or stderr.truncated,
        seconds=time.monotonic() - started,
    )


_RUNNERS: dict[str, Callable[[MachineAccess, str, float, str], Awaitable[ScriptResult]]] = {
    "vm": _run_over_ssh,
    "container": _run_over_exec,
}
