"""A minimal PNG encoder (8-bit RGB, no filtering): enough to turn QEMU's PPM screendump into a PNG."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgb_to_png(width: int, height: int, rgb: bytes) -> bytes:
    row = width * 3
    # Each scanline starts with its filter type; 0 = none.
    raw = b"".join(b"\0" + rgb[y * row : (y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def ppm_to_png(ppm: bytes) -> bytes:
    """Convert a binary PPM (P6, maxval 255, as QEMU writes it) to PNG."""
    fields: list[bytes] = []
    pos = 0
    # Header: magic, width, height, maxval separated by whitespace (QEMU writes no comments).
    while len(fields) < 4:
        while ppm[pos : pos + 1].isspace():
            pos += 1
        start = pos
        while not ppm[pos : pos + 1].isspace():
            pos += 1
        fields.append(ppm[start:pos])
    pos += 1  # the single whitespace byte before the pixels
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"unsupported PPM header {fields!r}")
    width, height = int(fields[1]), int(fields[2])
    return rgb_to_png(width, height, ppm[pos : pos + width * height * 3])
