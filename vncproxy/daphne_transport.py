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
- from the browser: the protocol's `onMessage` is replaced by one that hands the frame to the relay
  at once (until the relay starts, frames queue here, and reading pauses above
  CONSOLE_BUFFER_BYTES); the relay pauses reading the socket while the upstream is full;
- close: `sendClose(code, reason)`, so the browser gets the reason, which Daphne 4.2 drops.

Under any other server (or Channels' test communicator) `attach()` returns None and the consumer
uses plain ASGI messages. Tested against the pinned Daphne 4.2 / autobahn in tests/vncproxy.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from autobahn.exception import Disconnected
from autobahn.websocket.protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import tcp

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
    """Implements `relay.BrowserSide`, plus the browser→upstream pump."""

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

    def write(self, data: bytes | memoryview) -> bool:
        if not self._send_direct(data):
            try:
                self.protocol.sendMessage(bytes(data), True)
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

    def _send_direct(self, data: bytes | memoryview) -> bool:
        """The common case, without copies or a reactor round: one unfragmented binary frame
        written straight to the socket with `sendmsg` while Twisted's write buffer is empty
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
        length = len(data)
        if length < 126:
            header = _HEADER_SHORT(0x82, length)
        elif length < 65536:
            header = _HEADER_MEDIUM(0x82, 126, length)
        else:
            header = _HEADER_LONG(0x82, 127, length)
        try:
            sent = sock.sendmsg((header, data))
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False  # Twisted's own write finds the error and disconnects
        # Twisted keeps what the socket did not take; it wants bytes, and a view is only lent.
        if sent < len(header):
            transport.write(header[sent:] + bytes(data))
        elif sent < len(header) + length:
            transport.write(bytes(data[sent - len(header) :]))
        return True

    async def close(self, code: int, reason: str) -> None:
        self.protocol.sendClose(code=code, reason=reason)

    # -- browser → upstream --------------------------------------------------------------------------
    def _on_message(self, payload: bytes, is_binary: bool) -> None:
        # Daphne's own onMessage does this; its keepalive pings are scheduled from it.
        self.protocol.last_ping = time.time()
        if not is_binary:
            return  # text frames are dropped, as KubeVirt drops them
        if self._relay is not None:
            self._relay.from_browser(payload)
            return
        self._pending.append(payload)
        self._pending_bytes += len(payload)
        if self._pending_bytes > self.limit:
            self.pause_reading()

    def stop(self) -> None:
        self._relay = None
        self.protocol.onMessage = self._original_on_message
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
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack


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
