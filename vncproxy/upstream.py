"""The machine's end of a console stream: the VMI's `vnc`/`console` websocket on the API server.

Where to connect, and with which TLS material and token, comes from `labs.cluster` (the one module
that knows the cluster connection). The websocket itself is websockets' sans-I/O `ClientProtocol`
(handshake, frames, masking, ping answers, the close handshake) on a plain asyncio protocol, so
that the relay keeps the transport's own flow control and pays for no task, queue or future per
frame:
- bytes from the machine are handed to the relay in the callback that read them; the console and
  RFB are byte streams, so the payloads of the frames one read brought go on together, whatever
  the frame boundaries (text frames are dropped, as virt-api drops them);
- `pause_reading()` while the browser cannot take more; `pause_writing()` (write buffer above
  CONSOLE_BUFFER_BYTES) tells the relay to stop reading the browser;
- a ping every CONSOLE_UPSTREAM_PING_SECONDS: virt-api sends no keepalive of its own on these
  streams (pkg/virt-api/rest/streamer.go, the raw streamer), and proxies and load balancers between
  here and the API server drop websockets that stay silent (kubevirt/kubevirt#6493). A ping left
  unanswered until the next one ends the stream, unless reading was paused meanwhile (the pong may
  be waiting behind data the browser has not taken yet).
Subprotocol `plain.kubevirt.io`, binary frames, no compression (VNC and serial bytes are either
already compressed or tiny, and deflate would cost more CPU than the relay itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Protocol

from django.conf import settings
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from labs import cluster
from labs.exceptions import ClusterError
from labs.manifests import CONTAINER_NAME

KUBEVIRT_SUBPROTOCOL = Subprotocol("plain.kubevirt.io")
UPSTREAM_KIND = {"vnc": "vnc", "serial": "console"}  # route kind → KubeVirt subresource
# A container machine's terminal: Kubernetes' pods/exec, v5 (with the close signal) preferred,
# v4 as API servers before 1.30 speak it (k8s.io/apimachinery/pkg/util/remotecommand/constants.go).
EXEC_SUBPROTOCOLS = [Subprotocol("v5.channel.k8s.io"), Subprotocol("v4.channel.k8s.io")]
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
# The shell a terminal opens: a login shell of the image's bash, else sh; as the machine's shell
# user when that is a name (a numeric one already runs the whole container, labs/manifests.py).
SHELL_SCRIPT = (
    "export TERM=xterm-256color; if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l"
)

USER_AGENT = "laborchestrator-console-proxy"
# What an error answer's message may take in a log line or a staff member's close reason.
MESSAGE_LIMIT = 200
# A frame (or fragmented message) from the machine larger than this ends the stream (1009): websockets
# holds a frame whole until it is complete. virt-api's are at most 10 KiB (client-go's
# WebsocketMessageBufferSize); the local cluster's 256 KiB.
MAX_FRAME_BYTES = 1024 * 1024


class UpstreamError(Exception):
    """The stream could not be opened. `message` is plain words for anyone; `cluster_reason` is what
    the API server said (its Status message or body), for staff and logs."""

    def __init__(self, message: str, *, cluster_reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.cluster_reason = cluster_reason


class UpstreamNotRunning(UpstreamError):
    """virt-api answered 400 before the upgrade: the VMI is not running."""


class UpstreamFailed(UpstreamError):
    """virt-api answered 409 before the upgrade: the VMI has failed (pkg/virt-api/rest/console.go)."""


class UpstreamUnavailable(UpstreamError):
    """The API server could not be reached, refused us, or answered something else (virt-api's 500
    for a busy VNC with preserveSession=true among them)."""


class UpstreamSink(Protocol):
    """Where an open upstream delivers (the relay)."""

    def upstream_data(self, chunks: list[bytes]) -> None:
        """Bytes from the machine, in order: the payloads of the frames one read brought."""

    def upstream_writable(self) -> None:
        """The upstream's write buffer drained after `writable` was False."""

    def upstream_closed(self, cause: str) -> None:
        """The machine's side ended (close frame, end of stream, error, no keepalive answer); once."""


class UpstreamConnection(asyncio.Protocol):
    """One open `vnc`/`console` websocket, after `open_upstream`."""

    def __init__(
        self, protocol: ClientProtocol, *, write_limit: int, ping_interval: float, exec_channels: bool = False
    ) -> None:
        self.protocol = protocol
        # pods/exec: every frame starts with its channel byte (stdin out; stdout, stderr, error in).
        self.exec_channels = exec_channels
        self.write_limit = write_limit
        self.ping_interval = ping_interval
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.sink: UpstreamSink | None = None
        self.closed = False  # no more frames either way (close frame sent or received, or lost)
        self._held: list[bytes] = []  # payloads that arrived before a sink was attached
        self._ended_cause: str | None = None  # set when the stream ended (maybe before a sink was)
        self._binary_message = True  # whether continuation frames belong to a binary message
        self._reading_paused = False
        self._drained = asyncio.Event()  # clear while the transport asks us to pause writing
        self._drained.set()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_unanswered = False
        self._paused_since_ping = False

    # -- asyncio protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a Transport (uvloop's is not a subclass)
        transport.set_write_buffer_limits(high=self.write_limit)  # type: ignore[attr-defined]
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool:
        if self.opened.done() and self.protocol.close_rcvd is None:
            # virt-api ends a replaced or broken stream by closing the connection, without a close
            # frame (its raw streamer copies bytes; a browser would see 1006).
            self._end_stream("the API server closed the connection without a close frame")
        self.protocol.receive_eof()
        self._handle_events()
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_keepalive()
        self._drained.set()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection closed during the handshake ({exc})"))
            return
        if self.protocol.close_rcvd is None:
            self._end_stream(
                "the connection to the API server was lost"
                if exc
                else "the API server closed the connection without a close frame"
            )

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()
        if self.sink is not None:
            self.sink.upstream_writable()

    # -- the relay's side -----------------------------------------------------------------------------
    def attach(self, sink: UpstreamSink) -> None:
        """Start delivering to `sink`, beginning with what arrived since the handshake."""
        self.sink = sink
        held, self._held = self._held, []
        if held:
            sink.upstream_data(held)
        if self._ended_cause is not None:
            sink.upstream_closed(self._ended_cause)
            return
        self._start_keepalive()
        if not self._reading_paused:  # unless the sink asked for a pause while handed `held`
            self._resume_transport()

    def send(self, data: bytes | memoryview) -> None:
        """One binary frame to the machine. Check `writable` afterwards (or await `drained()`)."""
        if not self.closed:
            self.protocol.send_binary(bytes([STDIN]) + bytes(data) if self.exec_channels else data)
            self._flush()

    def send_resize(self, columns: int, rows: int) -> None:
        """The terminal's new size, on pods/exec's resize channel (remotecommand.TerminalSize)."""
        if self.exec_channels and not self.closed and columns > 0 and rows > 0:
            size = json.dumps({"Width": int(columns), "Height": int(rows)}).encode()
            self.protocol.send_binary(bytes([RESIZE]) + size)
            self._flush()

    @property
    def writable(self) -> bool:
        """False while the write buffer is above `write_limit` (until `upstream_writable`)."""
        return self._drained.is_set()

    async def drained(self) -> None:
        await self._drained.wait()

    def pause_reading(self) -> None:
        self._reading_paused = True
        self._paused_since_ping = True
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self.sink is not None:
            self._resume_transport()

    def close(self, code: int = 1000) -> None:
        """Send a close frame (if none was exchanged yet) and close the connection."""
        self._stop_keepalive()
        if not self.closed and self.protocol.state is State.OPEN:
            self.protocol.send_close(code)
            self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self._stop_keepalive()
        if self.transport is not None:
            self.transport.abort()

    # -- events -----------------------------------------------------------------------------------------
    def _handle_events(self) -> None:
        chunks: list[bytes] = []
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                opcode = event.opcode
                if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
                    self._binary_message = opcode is Opcode.BINARY  # text is dropped, as virt-api does
                if opcode in (Opcode.BINARY, Opcode.CONT, Opcode.TEXT):
                    if self._binary_message and event.data:
                        if self.exec_channels:
                            chunks += self._exec_frame(bytes(event.data))
                        else:
                            chunks.append(event.data)  # type: ignore[arg-type]  # bytes: we never pass others
                elif opcode is Opcode.PONG:
                    self._ping_unanswered = False
                elif opcode is Opcode.CLOSE:
                    self._deliver(chunks)  # what came before the close goes first
                    chunks = []
                    close = self.protocol.close_rcvd
                    code = close.code if close is not None else 1005
                    self._end_stream(f"the machine's side closed the stream (code {code})")
            elif isinstance(event, Response):
                self._handshake_done()
        self._deliver(chunks)
        if not self.opened.done() and self.protocol.handshake_exc is not None:
            self._fail_handshake(self.protocol.handshake_exc)
            return
        self._flush()  # pongs, the close reply, a close for a protocol error
        if self.protocol.parser_exc is not None and self.opened.done():
            # websockets has queued a close frame (1002) and sent it with the flush above.
            self._end_stream(f"websocket protocol error from the API server: {self.protocol.parser_exc}")
            self._close_transport()
        elif self.protocol.close_rcvd is not None:
            self._close_transport()

    def _exec_frame(self, frame: bytes) -> list[bytes]:
        """A pods/exec frame (one whole frame: the API server never fragments them): the output's
        bytes, or the command's end on the error channel (a metav1.Status)."""
        channel, payload = frame[0], frame[1:]
        if channel in (STDOUT, STDERR):
            return [payload] if payload else []  # an empty frame only says the stream is open
        if channel == ERROR:
            self._end_stream(f"the shell ended: {_exec_outcome(payload)}")
        return []

    def _deliver(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        if self.sink is not None:
            self.sink.upstream_data(chunks)
        else:
            self._held.extend(chunks)

    def _handshake_done(self) -> None:
        if self.opened.done() or self.protocol.handshake_exc is not None:
            return  # a refusal: _fail_handshake reports it
        # Until a relay attaches, what arrives is held (attach() delivers it): read no further.
        if self.transport is not None:
            self.transport.pause_reading()
        self.opened.set_result(None)

    def _fail_handshake(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _end_stream(self, cause: str) -> None:
        if self._ended_cause is not None:
            return
        self._ended_cause = cause
        self._stop_keepalive()
        if self.sink is not None:
            self.sink.upstream_closed(cause)

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            # An empty piece asks for a half-close, which only a server side sends first.

    def _close_transport(self) -> None:
        self.closed = True
        self._stop_keepalive()
        if self.transport is not None:
            self.transport.close()

    def _resume_transport(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- keepalive --------------------------------------------------------------------------------------
    def _start_keepalive(self) -> None:
        if self.ping_interval > 0 and self._ping_timer is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.ping_interval, self._keepalive)

    def _stop_keepalive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _keepalive(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        if self._ping_unanswered and not self._paused_since_ping:
            self._end_stream(f"no answer to a keepalive ping within {self.ping_interval:g} s")
            self.abort()
            return
        self._ping_unanswered = True
        self._paused_since_ping = self._reading_paused
        self.protocol.send_ping(os.urandom(4))
        self._flush()
        self._start_keepalive()


def _exec_outcome(payload: bytes) -> str:
    try:
        status = json.loads(payload)
    except ValueError:
        return payload[:MESSAGE_LIMIT].decode(errors="replace")
    if not isinstance(status, dict) or status.get("status") == "Success":
        return "exit code 0"
    causes = (status.get("details") or {}).get("causes") or []
    code = next(
        (c.get("message") for c in causes if isinstance(c, dict) and c.get("reason") == "ExitCode"), None
    )
    return f"exit code {code}" if code is not None else str(status.get("message", ""))[:MESSAGE_LIMIT]


def _cluster_reason(response: Response) -> str:
    """The message of an error answer: a Kubernetes Status's `message`, else the body's text."""
    body = response.body or b""
    with contextlib.suppress(ValueError, AttributeError):
        status = json.loads(body)
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return status["message"][:MESSAGE_LIMIT]
    return body[:MESSAGE_LIMIT].decode(errors="replace").strip() or f"HTTP {response.status_code}"


def refusal_error(response: Response) -> UpstreamError:
    """What virt-api's answer before the upgrade means for the console (pkg/virt-api/rest/console.go,
    vnc.go, dialers.go): 400 not running, 409 failed, anything else unavailable."""
    reason = _cluster_reason(response)
    status = response.status_code
    if status == 400:
        return UpstreamNotRunning("The machine is not running.", cluster_reason=reason)
    if status == 409:
        message = "The machine has failed; stop the lab and start it again."
        return UpstreamFailed(message, cluster_reason=reason)
    return UpstreamUnavailable(f"The cluster refused the console (HTTP {status}).", cluster_reason=reason)


def shell_command(shell_user: str) -> list[str]:
    """What a container machine's terminal runs (a fresh shell per connection)."""
    if shell_user and not shell_user.isdigit():
        return ["su", "-s", "/bin/sh", "-c", SHELL_SCRIPT, "-", shell_user]
    return ["sh", "-c", SHELL_SCRIPT]


async def open_upstream(*, namespace: str, name: str, kind: str, shell_user: str = "") -> UpstreamConnection:
    """An open websocket to the machine's `vnc` or `console` (kind "vnc" or "serial"), or to a new
    shell in a container machine through `pods/exec` (kind "terminal")."""
    exec_channels = kind == "terminal"
    try:
        # Off the event loop: the first call loads the kubeconfig and the CA bundle from disk.
        if exec_channels:
            target = await asyncio.to_thread(
                cluster.pod_exec_websocket_target,
                namespace=namespace,
                name=name,
                container=CONTAINER_NAME,
                command=shell_command(shell_user),
            )
        else:
            target = await asyncio.to_thread(
                cluster.subresource_websocket_target, namespace=namespace, name=name, kind=UPSTREAM_KIND[kind]
            )
    except ClusterError as error:
        raise UpstreamUnavailable(error.message, cluster_reason=error.message) from error
    connection: UpstreamConnection | None = None
    try:
        uri = parse_uri(target.url)
        subprotocols = EXEC_SUBPROTOCOLS if exec_channels else [KUBEVIRT_SUBPROTOCOL]
        protocol = ClientProtocol(uri, subprotocols=subprotocols, max_size=MAX_FRAME_BYTES)
        request = protocol.connect()
        for header, value in target.headers.items():
            request.headers[header] = value
        request.headers["User-Agent"] = USER_AGENT
        protocol.send_request(request)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS):
            _, connection = await loop.create_connection(
                lambda: UpstreamConnection(
                    protocol,
                    write_limit=settings.CONSOLE_BUFFER_BYTES,
                    ping_interval=settings.CONSOLE_UPSTREAM_PING_SECONDS,
                    exec_channels=exec_channels,
                ),
                uri.host,
                uri.port,
                ssl=target.ssl if uri.secure else None,
                server_hostname=(target.server_hostname or uri.host) if uri.secure else None,
            )
            await connection.opened
        return connection
    except InvalidStatus as error:
        _close_quietly(connection)
        raise refusal_error(error.response) from error
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
        _close_quietly(connection)
        reason = f"{type(error).__name__}: {error}"[:MESSAGE_LIMIT]
        raise UpstreamUnavailable(
            f"The cluster is unreachable ({type(error).__name__}).", cluster_reason=reason
        ) from error
    except BaseException:
        _close_quietly(connection)
        raise


def _close_quietly(connection: UpstreamConnection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.abort()
