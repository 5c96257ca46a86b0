"""Stand-ins for a guest's serial port and screen, for the `none` runtime.

- Console: writes `localcluster none-runtime console <ns>/<name>\r\n`, then echoes every byte back.
- VNC: a minimal RFB 3.8 server. Security type None, a 320x200 framebuffer with a non-blank test
  pattern, honours SetPixelFormat (noVNC asks for its own channel order), answers a non-incremental
  FramebufferUpdateRequest with the whole screen as one Raw rectangle, and incremental ones only
  every second (nothing changes, so real servers stay quiet; the trickle keeps clients' loops alive).
- Screenshot: the same test pattern as a PNG.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import zlib
from dataclasses import dataclass

WIDTH, HEIGHT = 320, 200
ECHO_CHUNK_BYTES = 256 * 1024  # the echo console's read size: large, so a stream costs few wake-ups


def test_pattern() -> list[list[tuple[int, int, int]]]:
    """Colour bars over a dark background: clearly not blank, cheap to compute."""
    bars = [
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
    ]
    rows = []
    for y in range(HEIGHT):
        row = []
        for x in range(WIDTH):
            if y < HEIGHT * 2 // 3:
                row.append(bars[x * len(bars) // WIDTH])
            else:
                shade = x * 255 // (WIDTH - 1)
                row.append((shade, shade, shade))
        rows.append(row)
    return rows


@functools.cache
def pattern() -> list[list[tuple[int, int, int]]]:
    return test_pattern()


def png(pixels: list[list[tuple[int, int, int]]] | None = None) -> bytes:
    pixels = pixels if pixels is not None else pattern()
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", len(pixels[0]), len(pixels), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def serve_console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
    try:
        writer.write(f"localcluster none-runtime console {label}\r\n".encode())
        await writer.drain()
        while data := await reader.read(ECHO_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@dataclass
class PixelFormat:
    bits_per_pixel: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    def pack(self) -> bytes:
        return struct.pack(
            ">BBBBHHHBBB3x",
            self.bits_per_pixel,
            self.depth,
            self.big_endian,
            self.true_colour,
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        bpp, depth, big, true, rmax, gmax, bmax, rs, gs, bs = struct.unpack(">BBBBHHHBBB3x", data)
        return cls(bpp, depth, bool(big), bool(true), rmax, gmax, bmax, rs, gs, bs)

    def encode(self, pixels: list[list[tuple[int, int, int]]]) -> bytes:
        size = self.bits_per_pixel // 8
        order = "big" if self.big_endian else "little"
        cache: dict[tuple[int, int, int], bytes] = {}
        out = bytearray()
        for row in pixels:
            for px in row:
                if px not in cache:
                    r, g, b = px
                    value = (
                        (r * self.red_max // 255) << self.red_shift
                        | (g * self.green_max // 255) << self.green_shift
                        | (b * self.blue_max // 255) << self.blue_shift
                    )
                    cache[px] = value.to_bytes(size, order)
                out += cache[px]
        return bytes(out)


async def serve_vnc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
    try:
        await _rfb_session(reader, writer, label)
    except (ConnectionError, asyncio.IncompleteReadError, struct.error):
        pass
    finally:
        writer.close()


async def _rfb_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
    writer.write(b"RFB 003.008\n")
    await reader.readexactly(12)  # the client's version
    writer.write(b"\x01\x01")  # one security type: None
    await reader.readexactly(1)
    writer.write(struct.pack(">I", 0))  # SecurityResult OK
    await reader.readexactly(1)  # ClientInit (shared flag)
    fmt = PixelFormat()
    name = f"localcluster {label}".encode()
    writer.write(struct.pack(">HH", WIDTH, HEIGHT) + fmt.pack() + struct.pack(">I", len(name)) + name)
    await writer.drain()
    last_update = 0.0
    loop = asyncio.get_running_loop()
    while True:
        message_type = (await reader.readexactly(1))[0]
        if message_type == 0:  # SetPixelFormat
            fmt = PixelFormat.unpack((await reader.readexactly(19))[3:])
        elif message_type == 2:  # SetEncodings
            _, count = struct.unpack(">BH", await reader.readexactly(3))
            await reader.readexactly(4 * count)
        elif message_type == 3:  # FramebufferUpdateRequest
            incremental = (await reader.readexactly(9))[0]
            if incremental and loop.time() - last_update < 1.0:
                await asyncio.sleep(1.0 - (loop.time() - last_update))
            last_update = loop.time()
            header = struct.pack(">BxHHHHHi", 0, 1, 0, 0, WIDTH, HEIGHT, 0)
            writer.write(header + fmt.encode(pattern()))
            await writer.drain()
        elif message_type == 4:  # KeyEvent
            await reader.readexactly(7)
        elif message_type == 5:  # PointerEvent
            await reader.readexactly(5)
        elif message_type == 6:  # ClientCutText
            _, length = struct.unpack(">3sI", await reader.readexactly(7))
            await reader.readexactly(length)
        else:
            return  # unknown message: a real server would drop the client too
