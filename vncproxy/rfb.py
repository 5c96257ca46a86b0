"""Just enough RFB (RFC 6143) to share one VNC stream between a student and observers.

The relay still passes the student's bytes through unchanged (machine → student) and never decodes
pixels. What this module adds:
- `ClientStream` reads the student's messages to the machine, whole (it holds a partial message
  until the rest arrives), so that the relay can slip its own FramebufferUpdateRequest in between
  two of them, and narrows SetEncodings to encodings without state across messages (Raw, CopyRect,
  RRE, Hextile, and pseudo-encodings whose length we know): Tight and ZRLE carry zlib streams from
  one update to the next, which an observer joining mid-way could not decode. It also remembers the
  pixel format the student asked for.
- `ServerStream` follows the machine's messages to the student and reports where each one starts,
  so an observer joins at a message boundary. It keeps the ServerInit (size, name) for observers.
- `observer_handshake` plays the server's side of the handshake toward an observer's noVNC
  (version 3.8, security None), ending with a ServerInit in the student's pixel format; the relay
  then asks the machine for one full (non-incremental) update, so the newcomer gets the whole
  picture, and forwards from the next message boundary on.

Anything the parsers do not know (an encoding the server was not offered, a message type from an
extension) marks the stream `broken`: the student's stream goes on untouched, observers are closed.

No library owns this: the Python RFB packages are clients (vncdotool on Twisted, asyncvnc), not
sans-I/O parsers; what is here is message framing only, no codec.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass

PROTOCOL_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1

# Encodings the student's client may keep: no state between updates, lengths we can compute.
RAW, COPY_RECT, RRE, HEXTILE = 0, 1, 2, 5
DESKTOP_SIZE, LAST_RECT, CURSOR = -223, -224, -239
EXTENDED_DESKTOP_SIZE = -308
QEMU_EXTENDED_KEY_EVENT, QEMU_LED_STATE = -258, -261
STATELESS = {RAW, COPY_RECT, RRE, HEXTILE}
PSEUDO_WITH_KNOWN_LENGTH = {
    DESKTOP_SIZE,
    LAST_RECT,
    CURSOR,
    EXTENDED_DESKTOP_SIZE,
    QEMU_EXTENDED_KEY_EVENT,
    QEMU_LED_STATE,
}


def _hint(encoding: int) -> bool:
    """Quality and compression levels: hints the server answers with nothing of their own."""
    return -32 <= encoding <= -23 or -256 <= encoding <= -247


def allowed_encoding(encoding: int) -> bool:
    return encoding in STATELESS or encoding in PSEUDO_WITH_KNOWN_LENGTH or _hint(encoding)


class RfbBroken(Exception):
    """Something this framing does not know: sharing ends, the student's stream does not."""


class HextileSkip:
    """Passes one Hextile rectangle by, tile after tile. A loop over the bytes rather than a parser
    step per field: Hextile is most of a desktop's updates, and a full 1024x768 screen is 3,072
    tiles."""

    def __init__(self, width: int, height: int, bytes_per_pixel: int) -> None:
        self.width, self.height, self.bpp = width, height, bytes_per_pixel
        self.columns = (width + 15) // 16
        self.tiles = self.columns * ((height + 15) // 16)
        self.index = 0
        self.skip = 0  # bytes of the current tile still to pass
        self.count_next = False  # the next byte is the number of subrectangles
        self.coloured = False

    @property
    def done(self) -> bool:
        return self.index >= self.tiles and not self.skip and not self.count_next

    def consume(self, data: memoryview, position: int) -> int:
        """Pass what of `data` from `position` belongs to the rectangle; returns where it ended."""
        size = len(data)
        while position < size:
            if self.skip:
                taken = min(self.skip, size - position)
                position += taken
                self.skip -= taken
            elif self.count_next:
                self.count_next = False
                self.skip = data[position] * ((self.bpp + 2) if self.coloured else 2)
                position += 1
            elif self.index < self.tiles:
                mask = data[position]
                position += 1
                row, column = divmod(self.index, self.columns)
                self.index += 1
                if mask & 1:  # a Raw tile
                    self.skip = min(16, self.width - column * 16) * min(16, self.height - row * 16) * self.bpp
                    continue
                self.skip = (self.bpp if mask & 2 else 0) + (self.bpp if mask & 4 else 0)
                if mask & 8:  # AnySubrects (SubrectsColoured: each with its colour)
                    self.count_next, self.coloured = True, bool(mask & 16)
            else:
                break
        return position


# A parser yields N > 0 to read N bytes, -N to skip N bytes, 0 to mark the start of a message, or a
# HextileSkip to pass a Hextile rectangle by.
Need = Generator["int | HextileSkip", bytes, None]


@dataclass
class PixelFormat:
    raw: bytes  # the 16 bytes of the RFB PIXEL_FORMAT

    @property
    def bytes_per_pixel(self) -> int:
        return max(1, self.raw[0] // 8)


class _Framing:
    """Drives a generator parser over incoming bytes; bounded memory: a partial header at most (big
    payloads are skipped as they pass, never held)."""

    def __init__(self) -> None:
        self.broken = False
        self._buffer = bytearray()
        self._parser = self._parse()
        self._wanted = next(self._parser)

    def _parse(self) -> Need:  # pragma: no cover - overridden
        raise NotImplementedError
        yield 0

    def _advance(self, data: bytes) -> list[int]:
        """Feed `data`; the offsets in it where a message starts."""
        boundaries: list[int] = []
        if self.broken:
            return boundaries
        view, position, size = memoryview(data), 0, len(data)
        try:
            while True:
                wanted = self._wanted
                if isinstance(wanted, HextileSkip):
                    position = wanted.consume(view, position)
                    if not wanted.done:
                        break
                    self._wanted = self._parser.send(b"")
                elif wanted == 0:  # a message starts here (nothing is buffered between messages)
                    boundaries.append(position)
                    self._wanted = self._parser.send(b"")
                elif wanted < 0:  # pass this many bytes by without holding them
                    taken = min(-wanted, size - position)
                    position += taken
                    if taken < -wanted:
                        self._wanted = wanted + taken
                        break
                    self._wanted = self._parser.send(b"")
                else:
                    taken = min(wanted - len(self._buffer), size - position)
                    self._buffer += view[position : position + taken]
                    position += taken
                    if len(self._buffer) < wanted:
                        break
                    chunk = bytes(self._buffer)
                    self._buffer.clear()
                    self._wanted = self._parser.send(chunk)
        except (RfbBroken, StopIteration, struct.error):
            self.broken = True
        return boundaries


class ServerStream(_Framing):
    """The machine's side of one RFB session, followed message by message."""

    def __init__(self) -> None:
        self.width = self.height = 0
        self.name = b""
        self.server_format: PixelFormat | None = None
        self.client_format: PixelFormat | None = None  # what the student asked for, once they did
        self.initialised = False  # the ServerInit has passed: observers may join
        self.at_boundary = False  # nothing of a message is pending (an observer may start now)
        super().__init__()

    def feed(self, data: bytes) -> list[int]:
        return self._advance(data)

    @property
    def pixel_format(self) -> PixelFormat:
        return self.client_format or self.server_format  # type: ignore[return-value]

    def server_init(self) -> bytes:
        """A ServerInit for an observer: the current size, the student's pixel format, the name."""
        return (
            struct.pack(">HH", self.width, self.height)
            + self.pixel_format.raw
            + struct.pack(">I", len(self.name))
            + self.name
        )

    def _parse(self) -> Need:
        version = yield 12
        if not version.startswith(b"RFB 003.008"):
            raise RfbBroken(f"protocol version {version!r}")
        count = (yield 1)[0]
        if count == 0:
            raise RfbBroken("the server refused the connection")
        types = yield count
        if SECURITY_NONE not in types:
            raise RfbBroken("no security type None")
        result = yield 4
        if result != b"\0\0\0\0":
            raise RfbBroken("security failed")
        self.width, self.height = struct.unpack(">HH", (yield 4))
        self.server_format = PixelFormat((yield 16))
        name_length = struct.unpack(">I", (yield 4))[0]
        if name_length > 4096:
            raise RfbBroken("desktop name too long")
        self.name = (yield name_length) if name_length else b""
        self.initialised = True
        while True:
            self.at_boundary = True
            yield 0
            kind = (yield 1)[0]
            self.at_boundary = False
            if kind == 0:
                yield from self._framebuffer_update()
            elif kind == 1:  # SetColourMapEntries
                count = struct.unpack(">xHH", (yield 5))[1]
                if count:
                    yield -6 * count
            elif kind == 2:  # Bell
                pass
            elif kind == 3:  # ServerCutText
                length = struct.unpack(">3xI", (yield 7))[0]
                if length:
                    yield -length
            else:
                raise RfbBroken(f"server message type {kind}")

    def _framebuffer_update(self) -> Need:
        rectangles = struct.unpack(">xH", (yield 3))[0]
        index = 0
        while rectangles == 0xFFFF or index < rectangles:
            index += 1
            # x and y; for ExtendedDesktopSize, the reason and the status of a change.
            _x, status, w, h, encoding = struct.unpack(">HHHHi", (yield 12))
            bpp = self.pixel_format.bytes_per_pixel
            if encoding == LAST_RECT:
                return
            if encoding == RAW:
                if w * h:
                    yield -(w * h * bpp)
            elif encoding == COPY_RECT:
                yield -4
            elif encoding == RRE:
                count = struct.unpack(">I", (yield 4))[0]
                yield -(bpp + count * (bpp + 8))
            elif encoding == HEXTILE:
                yield HextileSkip(w, h, bpp)
            elif encoding == DESKTOP_SIZE:
                self.width, self.height = w, h
            elif encoding == EXTENDED_DESKTOP_SIZE:
                screens = (yield 4)[0]
                yield -(16 * screens)
                if status == 0:  # a change that took effect (x says whose), not a refused request
                    self.width, self.height = w, h
            elif encoding == CURSOR:
                if w * h:
                    yield -(w * h * bpp + (w + 7) // 8 * h)
            elif encoding == QEMU_EXTENDED_KEY_EVENT:
                pass
            elif encoding == QEMU_LED_STATE:
                yield -1
            else:
                raise RfbBroken(f"encoding {encoding}")


class ClientStream:
    """The student's side: whole messages only, SetEncodings narrowed, SetPixelFormat remembered."""

    def __init__(self, server: ServerStream) -> None:
        self.server = server
        self.broken = False
        self._buffer = bytearray()
        self._handshake_left = [12, 1, 1]  # version, security type, ClientInit: passed through

    def feed(self, data: bytes) -> bytes:
        """What to send to the machine now: whole messages (rewritten), the rest held."""
        if self.broken:
            return data
        self._buffer += data
        out = bytearray()
        while self._buffer:
            size = self._next_size()
            if size is None or len(self._buffer) < size:
                break
            message, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
            out += self._rewrite(message)
        if self.broken:  # from here on, bytes pass as they come
            out += self._buffer
            self._buffer = bytearray()
        return bytes(out)

    def _next_size(self) -> int | None:
        if self._handshake_left:
            return self._handshake_left[0]
        kind = self._buffer[0]
        fixed = {0: 20, 3: 10, 4: 8, 5: 6}.get(kind)
        if fixed:
            return fixed
        if kind == 2:  # SetEncodings
            return 4 + 4 * struct.unpack(">H", self._buffer[2:4])[0] if len(self._buffer) >= 4 else None
        if kind == 6:  # ClientCutText
            return 8 + struct.unpack(">I", self._buffer[4:8])[0] if len(self._buffer) >= 8 else None
        if kind == 251:  # SetDesktopSize
            return 8 + 16 * self._buffer[6] if len(self._buffer) >= 8 else None
        if kind == 255:  # QEMU client message: only the extended key event (subtype 0) is expected
            if len(self._buffer) < 2:
                return None
            if self._buffer[1] == 0:
                return 12
        self.broken = True
        return None

    def _rewrite(self, message: bytes) -> bytes:
        if self._handshake_left:
            self._handshake_left.pop(0)
            return message
        if message[0] == 0:
            self.server.client_format = PixelFormat(message[4:20])
        elif message[0] == 2:
            count = struct.unpack(">H", message[2:4])[0]
            encodings = struct.unpack(f">{count}i", message[4:])
            kept = [e for e in encodings if allowed_encoding(e)] or [RAW]
            return struct.pack(f">BxH{len(kept)}i", 2, len(kept), *kept)
        return message


def full_update_request(width: int, height: int) -> bytes:
    """FramebufferUpdateRequest, non-incremental, for the whole screen."""
    return struct.pack(">BBHHHH", 3, 0, 0, 0, width, height)


class ObserverHandshake:
    """The server's side of the handshake toward an observer's client. `receive` takes what the
    observer sent and returns what to send back; `done` once the ServerInit went out. Everything
    the observer sends after that is dropped by the caller."""

    def __init__(self, server: ServerStream) -> None:
        self.server = server
        self.done = False
        self._received = 0

    def greeting(self) -> bytes:
        return PROTOCOL_VERSION

    def receive(self, data: bytes) -> bytes:
        if self.done:
            return b""
        out = bytearray()
        before, self._received = self._received, self._received + len(data)
        if before < 12 <= self._received:  # its version: offer None only
            out += bytes([1, SECURITY_NONE])
        if before < 13 <= self._received:  # its choice: accepted
            out += b"\0\0\0\0"
        if before < 14 <= self._received:  # ClientInit: the student's ServerInit
            out += self.server.server_init()
            self.done = True
        return bytes(out)
