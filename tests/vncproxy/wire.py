"""Websocket frames and handshake keys written out by hand for the tests (RFC 6455), on purpose
independent of the code under test (vncproxy/frames.py, autobahn, websockets)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from typing import NamedTuple

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server answers to the Sec-WebSocket-Key `key`."""
    return base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()


def xor_mask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    keystream = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(size, "big")


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = None
) -> bytes:
    """One frame with the shortest length header; masked with `mask` when one is given."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + mask + xor_mask(payload, mask) if mask else header + payload


class Frame(NamedTuple):
    """A frame as read off the wire, unmasked."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    mask: bytes | None
    length_field: int  # 7, 16 or 64: which length header the sender chose


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame; asyncio.IncompleteReadError when the connection ends first."""
    first, second = await reader.readexactly(2)
    length, length_field = second & 0x7F, 7
    if length == 126:
        (length,), length_field = struct.unpack("!H", await reader.readexactly(2)), 16
    elif length == 127:
        (length,), length_field = struct.unpack("!Q", await reader.readexactly(8)), 64
    mask = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(length)
    if mask:
        payload = xor_mask(payload, mask)
    return Frame(bool(first & 0x80), first & 0x70, first & 0x0F, payload, mask, length_field)
