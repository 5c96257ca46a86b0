"""RFC 6455 frame headers: the pure functions both ends of the console relay share."""

from __future__ import annotations

import struct
from typing import NamedTuple

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack
_MEDIUM_LENGTH = struct.Struct("!H").unpack_from
_LONG_LENGTH = struct.Struct("!Q").unpack_from


class Header(NamedTuple):
    fin: bool
    rsv: int  # the three reserved bits (no extension is negotiated, so they must be 0)
    opcode: int
    masked: bool
    length: int  # of the payload
    size: int  # of the header, mask key included


def read_header(data: bytes | bytearray | memoryview, position: int, end: int) -> Header | None:
    """The header of the frame that starts at `data[position]`, or None while it is incomplete."""
    available = end - position
    if available < 2:
        return None
    first, second = data[position], data[position + 1]
    length = second & 0x7F
    size = 6 if second & 0x80 else 2
    if length == 126:
        size += 2
    elif length == 127:
        size += 8
    if available < size:
        return None
    if length == 126:
        (length,) = _MEDIUM_LENGTH(data, position + 2)
    elif length == 127:
        (length,) = _LONG_LENGTH(data, position + 2)
    return Header(bool(first & 0x80), first & 0x70, first & 0x0F, bool(second & 0x80), length, size)


def frame_header(opcode: int, length: int, mask: bytes = b"") -> bytes:
    """The header of a final (FIN) frame; with a mask key, the mask bit and the key follow."""
    first, mask_bit = 0x80 | opcode, 0x80 if mask else 0
    if length < 126:
        header = _SHORT(first, mask_bit | length)
    elif length < 65536:
        header = _MEDIUM(first, mask_bit | 126, length)
    else:
        header = _LONG(first, mask_bit | 127, length)
    return header + mask if mask else header
