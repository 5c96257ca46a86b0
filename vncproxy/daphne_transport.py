"""The browser side of a console stream, straight on Daphne's websocket protocol object.

Plain ASGI has no flow control for websockets: Daphne hands every incoming frame to an unbounded
queue and writes every outgoing one into Twisted's unbounded write buffer. A console relay that
used only ASGI would buffer without limit when the browser (or the machine) is slower than the
other side, and pays for a dict, a coroutine chain and Channels' per-message dispatch on each frame.
So, when the consumer runs under Daphne, the relay talks to its autobahn protocol directly:

- to the browser: frames are written straight to the socket (see `_send_direct`), else with
  `sendMessage()`, with a push producer registered on the Twisted transport that Twisted pauses
  while its write buffer holds more than settings.CONSOLE_BUFFER_BYTES; the relay then stops
  reading the machine until Twisted resumes it;
- from the browser: data frames are read here (`_data_received`, in place of autobahn's reader):
  what one socket read brings goes to the relay at once as one piece (until the relay starts, it
  queues here, and reading pauses above CONSOLE_BUFFER_BYTES); the relay pauses reading the socket
  while the upstream is full. Control frames go to autobahn, which answers pings and runs the close
  handshake; anything unusual (a protocol error, compression) makes autobahn the reader again for
  good, and its `onMessage` is replaced by one that hands frames to the relay the same way;
- close: `sendClose(code, reason)`, so the browser gets the reason, which Daphne 4.2 drops.

Under any other server (or Channels' test communicator) `attach()` returns None and the consumer
uses plain ASGI messages. Tested against the pinned Daphne 4.2 / autobahn in tests/vncproxy.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from autobahn.exception import Disconnected
from autobahn.websocket.protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import tcp
from websockets.frames import apply_mask

from vncproxy.frames import OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, frame_header, read_header

if TYPE_CHECKING:
    from vncproxy.relay import Relay


def _daphne_protocol(send: Any) -> Any | None:
    """Daphne's protocol behind an ASGI send callable, through Channels' session wrapper."""
    for _ in range(8):  # the known wrappers nest two or three deep
        if isinstance(send, functools.partial):
            handler = getattr(send.func, "__qualname__", "")
            if handler == "Server.handle_reply" and send.args:
                protocol = send.args[0]
                if hasattr(protocol, "sendMessage") and hasattr(protocol, "onMessage"):
                    return protocol
            return None
        owner = getattr(send, "__self__", None)
        send = getattr(owner, "real_send", None)
        if send is None:
            return None
    return None


class DaphneBrowser:
    """Implements `relay.BrowserSide` on Daphne's protocol and transport."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.limit = settings.CONSOLE_BUFFER_BYTES
        self._writable = True
        self._pending: deque[bytes] = deque()  # frames from the browser before the relay starts
        self._pending_bytes = 0
        self._reading_paused = False
        self._relay: Relay | None = None
        self._original_on_message = protocol.onMessage
        # Twisted's HTTPChannel registered itself as the transport's producer before the upgrade;
        # after it, it has nothing left to produce, so this stream takes the place (and gives it
        # back in stop()). A transport has one producer slot.
        self._previous_producer = getattr(self.transport, "producer", None)
        self._previous_streaming = getattr(self.transport, "streamingProducer", True)
        if self._previous_producer is not None:
            self.transport.unregisterProducer()
        self.transport.bufferSize = self.limit
        # Twisted leaves Nagle on (asyncio, websockets and aiohttp turn it off): a keystroke's echo
        # could wait for the browser's delayed ACK behind a previous write.
        with contextlib.suppress(AttributeError, OSError):
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self._producer_registered = True
        self._socket = _plain_socket(self.transport)
        # From now on frames bypass the ASGI queue; they wait here until the relay starts.
        protocol.onMessage = self._on_message
        # Frames from the browser: read here while they are plain data frames (see `_data_received`).
        self._partial = b""  # an incomplete frame header (or control frame) from the last read
        self._payload_left = 0  # bytes of the current data frame's payload still to come
        self._payload_kept = False  # binary (relayed) or text (dropped)
        self._in_message = False  # a fragmented message has begun and not ended
        self._mask = b""
        self._mask_offset = 0
        if (
            protocol.state == _STATE_OPEN
            and protocol._perMessageCompress is None
            and protocol.current_frame is None
            and not protocol.data
        ):
            protocol.dataReceived = self._data_received

    # -- Twisted push producer: called by the transport as its write buffer fills and drains ----------
    def pauseProducing(self) -> None:
        self._writable = False

    def resumeProducing(self) -> None:
        self._writable = True
        if self._relay is not None:
            self._relay.browser_writable()

    def stopProducing(self) -> None:
        # Connection lost: the disconnect event ends the relay.
        self._writable = True

    # -- BrowserSide ---------------------------------------------------------------------------------
    def start(self, relay: Relay) -> None:
        self._relay = relay
        pending, self._pending = self._pending, deque()
        self._pending_bytes = 0
        for payload in pending:
            relay.from_browser(payload)
        if relay.upstream.writable:
            self.resume_reading()
        return None

    def write(self, chunks: list[memoryview]) -> bool:
        if not self._send_direct(chunks):
            try:
                self.protocol.sendMessage(b"".join(chunks), True)
            except Disconnected:
                return True  # the browser is gone; its disconnect event ends the relay
        return self._writable

    def pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _send_direct(self, chunks: list[memoryview]) -> bool:
        """The common case, without copies or a reactor round: the chunks as one unfragmented
        binary frame written straight to the socket with `sendmsg` while Twisted's write buffer is empty
        (so nothing is reordered); what the socket does not take goes to that buffer, where flow
        control sees it. False when this does not apply (TLS, compression, a closing or busy
        connection): then autobahn's `sendMessage` does it all."""
        sock, transport, protocol = self._socket, self.transport, self.protocol
        if (
            sock is None
            or protocol.state != _STATE_OPEN
            or protocol._perMessageCompress is not None
            or protocol.send_queue
            or not transport.connected
            or transport.disconnecting
            or transport._tempDataLen
            or transport.offset != len(transport.dataBuffer)
        ):
            return False
        if len(chunks) > _MAX_CHUNKS:
            chunks = [memoryview(b"".join(chunks))]
        length = sum(map(len, chunks))
        header = frame_header(OP_BINARY, length)
        try:
            sent = sock.sendmsg([header, *chunks])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False  # Twisted's own write finds the error and disconnects
        if sent < len(header) + length:
            # Twisted keeps what the socket did not take; it wants bytes, and the views are lent.
            transport.write(b"".join((header, *chunks))[sent:])
        return True

    async def close(self, code: int, reason: str) -> None:
        self.protocol.sendClose(code=code, reason=reason)

    # -- browser → upstream --------------------------------------------------------------------------
    def _data_received(self, data: bytes) -> None:
        """Bytes from the browser's socket, in place of autobahn's reader (see the module docstring).
        Data frames from a browser are masked: each payload piece is unmasked with the mask turned
        to its offset in the frame."""
        protocol = self.protocol
        protocol.last_ping = time.time()  # as Daphne's onMessage does; its keepalive pings rely on it
        if self._partial:
            data, self._partial = self._partial + data, b""
        view, position, end = memoryview(data), 0, len(data)
        payload: list[bytes] = []
        while position < end:
            if self._payload_left:
                size = min(self._payload_left, end - position)
                if self._payload_kept:
                    shift = self._mask_offset % 4
                    mask = self._mask[shift:] + self._mask[:shift]
                    payload.append(apply_mask(view[position : position + size], mask))
                self._mask_offset += size
                self._payload_left -= size
                position += size
                continue
            header = read_header(data, position, end)
            if header is None:
                break
            opcode = header.opcode
            if (
                header.masked
                and not header.rsv
                and (
                    (opcode in (OP_BINARY, OP_TEXT) and not self._in_message)
                    or (opcode == OP_CONTINUATION and self._in_message)
                )
            ):
                if opcode != OP_CONTINUATION:
                    self._payload_kept = opcode == OP_BINARY  # text frames are dropped, as KubeVirt does
                self._in_message = not header.fin
                self._mask = data[position + header.size - 4 : position + header.size]
                self._mask_offset = 0
                self._payload_left = header.length
                position += header.size
                continue
            # A control frame or something unusual: autobahn's reader deals with it.
            self._deliver(payload)
            payload = []
            if self._in_message and opcode in (OP_BINARY, OP_TEXT):
                # Autobahn never saw this message begin, so it would take the frame for a new one.
                self._give_reading_back(b"")
                protocol._protocol_violation(
                    "received non-continuation data frame while inside fragmented message"
                )
                return
            if opcode in (OP_PING, OP_PONG) and header.fin and header.masked and header.length <= 125:
                frame_end = position + header.size + header.length
                if frame_end > end:
                    break  # lent to autobahn whole, once it is all here
                protocol.__class__.dataReceived(protocol, data[position:frame_end])
                position = frame_end
                if protocol.state == _STATE_OPEN:
                    continue
            self._give_reading_back(data[position:])
            return
        self._partial = data[position:]
        self._deliver(payload)

    def _give_reading_back(self, data: bytes) -> None:
        """Autobahn reads from here on (close, protocol errors); its messages come to `_on_message`."""
        self._partial = b""
        protocol = self.protocol
        with contextlib.suppress(AttributeError):
            del protocol.dataReceived
        if data:
            protocol.dataReceived(data)

    def _deliver(self, payload: list[bytes]) -> None:
        if not payload:
            return
        data = payload[0] if len(payload) == 1 else b"".join(payload)
        if self._relay is not None:
            self._relay.from_browser(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.limit:
            self.pause_reading()

    def _on_message(self, payload: bytes, is_binary: bool) -> None:
        """A whole message, when autobahn reads (see `_give_reading_back`)."""
        self.protocol.last_ping = time.time()
        if is_binary:  # text frames are dropped, as KubeVirt drops them
            self._deliver([payload])

    def stop(self) -> None:
        self._relay = None
        self.protocol.onMessage = self._original_on_message
        if "dataReceived" in vars(self.protocol):
            self._give_reading_back(b"")
        self._pending.clear()
        if self._producer_registered:
            with contextlib.suppress(Exception):
                self.transport.unregisterProducer()
                if self._previous_producer is not None and self.transport.connected:
                    self.transport.registerProducer(self._previous_producer, self._previous_streaming)
            self._producer_registered = False
        if self._reading_paused:
            with contextlib.suppress(Exception):
                self.resume_reading()


_STATE_OPEN = WebSocketProtocol.STATE_OPEN
_MAX_CHUNKS = 64  # more pieces than this are joined before sendmsg (the kernel takes at most 1024)


def _plain_socket(transport: Any) -> socket.socket | None:
    """The TCP socket under a plain (not TLS) Twisted TCP transport with the write buffer this
    module relies on, else None (the direct write is then not used)."""
    sock = getattr(transport, "socket", None)
    if (
        not isinstance(transport, tcp.Connection)
        or getattr(transport, "TLS", False)
        or not isinstance(sock, socket.socket)
        or not all(hasattr(transport, name) for name in ("dataBuffer", "offset", "_tempDataLen"))
    ):
        return None
    return sock


def attach(consumer: Any) -> DaphneBrowser | None:
    """The direct browser side for this consumer, or None when not served by Daphne."""
    protocol = _daphne_protocol(consumer.base_send)
    if protocol is None or getattr(protocol, "transport", None) is None:
        return None
    return DaphneBrowser(protocol)
