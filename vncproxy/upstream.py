"""The machine's end of a console stream: the VMI's `vnc`/`console` websocket on the API server.

Where to connect, and with which TLS material and token, comes from `labs.cluster` (the one module
that knows the cluster connection). This module speaks the websocket: subprotocol
`plain.kubevirt.io`, binary frames, no compression (VNC and serial bytes are either already
compressed or tiny, and deflate would cost more CPU than the relay itself).

The opening handshake is websockets' sans-I/O `ClientProtocol` (request, response checks, errors).
After it, `UpstreamConnection` is a plain asyncio protocol with its own small frame codec, because
the relay needs none of what a general websocket client does per frame and pays for all of it on
every keystroke and screen update:
- no task, queue or future per frame: frames from the machine are parsed in the buffer the TLS layer
  decrypts into, and their payload is handed to the relay synchronously, in place, whatever the
  frame boundaries (the console and RFB are byte streams, so a large frame is passed on as it
  arrives instead of being reassembled);
- flow control is the transport's own: `pause_reading()` while the browser cannot take more, and
  `pause_writing()` (write buffer above CONSOLE_BUFFER_BYTES) tells the relay to stop reading the
  browser.
Control frames are answered as RFC 6455 asks (pong to ping, close to close); text frames are
dropped, as virt-api drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from typing import Protocol

from django.conf import settings
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import apply_mask
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from labs import cluster
from labs.exceptions import ClusterError
from vncproxy.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    frame_header,
    read_header,
)

KUBEVIRT_SUBPROTOCOL = Subprotocol("plain.kubevirt.io")
UPSTREAM_KIND = {"vnc": "vnc", "serial": "console"}  # route kind → KubeVirt subresource
USER_AGENT = "laborchestrator-console-proxy"
# Bytes decrypted per read: large enough that a busy stream costs few wake-ups (64 KiB relays as
# fast as 256 KiB did in bench/relay_throughput.py), small enough for CONSOLE_MAX_STREAMS_PROCESS
# streams per process. The handshake's response headers must fit too.
READ_BUFFER_BYTES = 64 * 1024

_CLOSE_CODE = struct.Struct("!H").unpack_from


class UpstreamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamNotRunning(UpstreamError):
    """virt-api answered 400 before the upgrade: the VMI is not running."""


class UpstreamUnavailable(UpstreamError):
    """The API server could not be reached, refused us, or answered something else."""


class UpstreamSink(Protocol):
    """Where an open upstream delivers (the relay)."""

    def upstream_data(self, chunks: list[memoryview]) -> None:
        """Bytes from the machine, in order: the payloads of the frames one read brought (the
        console and RFB are byte streams, so they may go on as one). Views into the read buffer,
        valid only during the call."""

    def upstream_writable(self) -> None:
        """The upstream's write buffer drained after `writable` was False."""

    def upstream_closed(self, cause: str) -> None:
        """The machine's side ended (close frame, end of stream, error); called once."""


class UpstreamConnection(asyncio.BufferedProtocol):
    """One open `vnc`/`console` websocket, after `open_upstream`. Client side of RFC 6455."""

    def __init__(self, handshake: ClientProtocol, write_limit: int) -> None:
        self.handshake = handshake
        self.write_limit = write_limit
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.sink: UpstreamSink | None = None
        self.closed = False  # no more frames either way (close frame sent or received, or lost)
        self._close_sent = False
        self._ended_cause: str | None = None  # set when the stream ended before a sink was attached
        self._buffer = bytearray(READ_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._start = 0  # unparsed bytes are _buffer[_start:_end]
        self._end = 0
        self._payload_left = 0  # bytes of the current data frame's payload still to come
        self._payload_kept = False  # whether they go to the sink (binary) or are dropped (text)
        self._response_started = False  # an error response's headers were read; its body follows
        self._drained = asyncio.Event()  # clear while the transport asks us to pause writing
        self._drained.set()

    # -- asyncio protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a Transport (uvloop's is not a subclass)
        transport.set_write_buffer_limits(high=self.write_limit)
        for data in self.handshake.data_to_send():
            transport.write(data)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        if not self.opened.done():
            self._read_handshake()
        elif self.sink is not None:
            self._read_frames()
        elif self._end == len(self._buffer) and self.transport is not None:
            self.transport.pause_reading()  # nobody to deliver to yet: attach() resumes

    def eof_received(self) -> bool:
        if not self.opened.done():
            self.handshake.receive_eof()
            self._read_handshake_events()
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection closed during the handshake ({exc})"))
            return
        self._end_stream("the connection to the API server was lost" if exc else "the API server closed it")
        self._drained.set()

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
        ended_cause = self._ended_cause  # an end found by _read_frames below reports itself
        # Resumed first (it only arms the next read): a pause the sink asks for while it is handed
        # what is already buffered must hold.
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
        self._read_frames()
        if ended_cause is not None:
            sink.upstream_closed(ended_cause)

    def send(self, data: bytes | memoryview) -> None:
        """One binary frame to the machine. Check `writable` afterwards (or await `drained()`)."""
        if not self.closed:
            self._send_frame(OP_BINARY, data)

    @property
    def writable(self) -> bool:
        """False while the write buffer is above `write_limit` (until `upstream_writable`)."""
        return self._drained.is_set()

    async def drained(self) -> None:
        await self._drained.wait()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self, code: int = 1000) -> None:
        """Send a close frame (if none was exchanged yet) and close the connection."""
        if not self.closed:
            self._send_close(struct.pack("!H", code))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- handshake --------------------------------------------------------------------------------------
    def _read_handshake(self) -> None:
        data = self._buffer[: self._end]
        if self._response_started:  # more of an error response's body
            self._end = 0
            self.handshake.receive_data(bytes(data))
            self._read_handshake_events()
            return
        end_of_headers = data.find(b"\r\n\r\n")
        if end_of_headers < 0:
            if self._end == len(self._buffer):
                self._fail_handshake(InvalidHandshake("response headers too large"))
            return
        if data.startswith((b"HTTP/1.1 101 ", b"HTTP/1.0 101 ")):
            # A 101 has no body: what follows the headers are the first frames; they stay in the
            # buffer for the frame reader (the handshake parser would take them as its own).
            consumed = end_of_headers + 4
        else:
            consumed = self._end  # an error response: its body is the message
            self._response_started = True
        self.handshake.receive_data(bytes(data[:consumed]))
        if consumed < self._end:
            self._buffer[: self._end - consumed] = self._buffer[consumed : self._end]
        self._end -= consumed
        self._read_handshake_events()

    def _read_handshake_events(self) -> None:
        if self.opened.done():
            return
        if not any(isinstance(event, Response) for event in self.handshake.events_received()):
            if self.handshake.handshake_exc is not None:
                self._fail_handshake(self.handshake.handshake_exc)
            return  # the rest of an error response's body is still to come
        if self.handshake.handshake_exc is not None:
            self._fail_handshake(self.handshake.handshake_exc)
            return
        # Until a relay attaches, what arrives stays in the buffer (attach() delivers it).
        if self.transport is not None:
            self.transport.pause_reading()
        self.opened.set_result(None)

    def _fail_handshake(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    # -- frames -------------------------------------------------------------------------------------------
    def _read_frames(self) -> None:
        buffer, view, sink = self._buffer, self._view, self.sink
        start, end = self._start, self._end
        chunks: list[memoryview] = []
        error = ""
        while start < end and not self.closed:
            if self._payload_left:
                size = min(self._payload_left, end - start)
                if self._payload_kept:
                    chunks.append(view[start : start + size])
                self._payload_left -= size
                start += size
                continue
            header = read_header(buffer, start, end)
            if header is None:
                break
            opcode, length = header.opcode, header.length
            if header.rsv or header.masked:
                error = "reserved bits or a masked frame from the server"
                break
            if opcode in (OP_BINARY, OP_TEXT, OP_CONTINUATION):
                if opcode != OP_CONTINUATION:
                    self._payload_kept = opcode == OP_BINARY  # text is dropped, as virt-api does
                self._payload_left = length
                start += header.size
                continue
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG) or length > 125 or not header.fin:
                error = f"unexpected frame (opcode {opcode})"
                break
            if end - start < header.size + length:
                break  # a control frame is handled whole
            payload = bytes(buffer[start + header.size : start + header.size + length])
            start += header.size + length
            if opcode == OP_CLOSE and chunks and sink is not None:
                sink.upstream_data(chunks)  # what came before the close goes first
                chunks = []
            self._control_frame(opcode, payload)
        if chunks and sink is not None:
            sink.upstream_data(chunks)
        if error:
            self._protocol_error(error)
        # What is left is at most an incomplete header or control frame: move it to the front.
        if start == end:
            self._start = self._end = 0
        else:
            if start:
                buffer[: end - start] = buffer[start:end]
            self._start, self._end = 0, end - start

    def _control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._send_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            code = _CLOSE_CODE(payload)[0] if len(payload) >= 2 else 1005
            self._send_close(payload[:2])
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self._end_stream(f"the machine's side closed the stream (code {code})")

    def _protocol_error(self, cause: str) -> None:
        self._send_close(struct.pack("!H", 1002))
        self.abort()
        self._end_stream(f"websocket protocol error from the API server: {cause}")

    def _send_close(self, payload: bytes) -> None:
        """The one close frame this side sends (RFC 6455: after it, no more frames)."""
        if not self._close_sent:
            self._send_frame(OP_CLOSE, payload)
            self._close_sent = True

    def _end_stream(self, cause: str) -> None:
        if self._ended_cause is not None:
            return
        self._ended_cause = cause
        if self.sink is not None:
            self.sink.upstream_closed(cause)

    def _send_frame(self, opcode: int, data: bytes | memoryview) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)  # a client masks every frame with a fresh unpredictable key
        self.transport.write(b"".join((frame_header(opcode, len(data), mask), apply_mask(data, mask))))


async def open_upstream(*, namespace: str, name: str, kind: str) -> UpstreamConnection:
    """An open websocket to the machine's `vnc` or `console` (kind "vnc" or "serial")."""
    try:
        # Off the event loop: the first call loads the kubeconfig and the CA bundle from disk.
        target = await asyncio.to_thread(
            cluster.subresource_websocket_target, namespace=namespace, name=name, kind=UPSTREAM_KIND[kind]
        )
    except ClusterError as error:
        raise UpstreamUnavailable(error.message) from error
    connection: UpstreamConnection | None = None
    try:
        uri = parse_uri(target.url)
        handshake = ClientProtocol(uri, subprotocols=[KUBEVIRT_SUBPROTOCOL], max_size=None)
        request = handshake.connect()
        for header, value in target.headers.items():
            request.headers[header] = value
        request.headers["User-Agent"] = USER_AGENT
        handshake.send_request(request)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS):
            _, connection = await loop.create_connection(
                lambda: UpstreamConnection(handshake, settings.CONSOLE_BUFFER_BYTES),
                uri.host,
                uri.port,
                ssl=target.ssl if uri.secure else None,
                server_hostname=(target.server_hostname or uri.host) if uri.secure else None,
            )
            await connection.opened
        return connection
    except InvalidStatus as error:
        _close_quietly(connection)
        status = error.response.status_code
        body = (error.response.body or b"")[:200].decode(errors="replace")
        if status == 400:
            raise UpstreamNotRunning(f"The machine is not running ({body.strip() or 'HTTP 400'}).") from error
        raise UpstreamUnavailable(f"The cluster refused the console (HTTP {status}).") from error
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
        _close_quietly(connection)
        raise UpstreamUnavailable(f"The cluster is unreachable ({type(error).__name__}).") from error
    except BaseException:
        _close_quietly(connection)
        raise


def _close_quietly(connection: UpstreamConnection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.abort()
