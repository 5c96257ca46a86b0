"""RFB framing for shared VNC streams (vncproxy/rfb.py): message boundaries found whatever the
chunking, payloads passed by, unknown things mark the stream broken, SetEncodings narrowed."""

from __future__ import annotations

import random
import struct

import pytest

from vncproxy.rfb import (
    ClientStream,
    ObserverHandshake,
    ServerStream,
    full_update_request,
)

PIXEL_FORMAT_32 = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
PIXEL_FORMAT_16 = struct.pack(">BBBBHHHBBB3x", 16, 16, 0, 1, 31, 63, 31, 11, 5, 0)
HANDSHAKE = b"RFB 003.008\n" + b"\x01\x01" + b"\0\0\0\0"
SERVER_INIT = struct.pack(">HH", 64, 40) + PIXEL_FORMAT_32 + struct.pack(">I", 4) + b"demo"


def rect(x, y, w, h, encoding, payload=b"") -> bytes:
    return struct.pack(">HHHHi", x, y, w, h, encoding) + payload


def update(*rects: bytes, count: int | None = None) -> bytes:
    return struct.pack(">BxH", 0, len(rects) if count is None else count) + b"".join(rects)


def hextile_40x20() -> bytes:
    """3 x 2 tiles, the last column 8 wide and the last row 4 high."""
    tiles = b"\x01" + b"\xaa" * (16 * 16 * 4)  # a raw tile
    coloured = (b"c" * 4 + b"\x00\x11") * 2
    tiles += bytes([2 | 4 | 8 | 16]) + b"B" * 4 + b"F" * 4 + b"\x02" + coloured  # coloured subrects
    tiles += bytes([4 | 8]) + b"F" * 4 + b"\x03" + b"\x00\x11" * 3  # subrects in the foreground colour
    tiles += b"\x00"  # the same background as before, nothing else
    tiles += b"\x01" + b"\xbb" * (16 * 4 * 4)  # a raw tile of the last row
    tiles += b"\x01" + b"\xcc" * (8 * 4 * 4)  # the corner tile
    return tiles


MESSAGES = [
    update(rect(0, 0, 4, 2, 0, b"p" * 32), rect(1, 1, 2, 2, 1, b"\0\0\0\0")),
    update(rect(0, 0, 40, 20, 5, hextile_40x20())),
    update(rect(0, 0, 0, 0, 5)),  # an empty Hextile rectangle
    update(rect(0, 0, 8, 8, 2, struct.pack(">I", 2) + b"b" * 4 + (b"s" * 4 + b"\0" * 8) * 2)),
    b"\x02",  # Bell
    struct.pack(">B3xI", 3, 5) + b"hello",  # ServerCutText
    update(rect(0, 0, 2, 2, -239, b"c" * 16 + b"\xc0\xc0")),  # cursor with its mask
    update(rect(0, 0, 100, 50, -223)),  # DesktopSize
    update(rect(0, 0, 1, 1, 0, b"p" * 4), rect(0, 0, 0, 0, -224), count=0xFFFF),  # LastRect
    struct.pack(">BxHH", 1, 0, 2) + b"m" * 12,  # SetColourMapEntries
]


def feed_in_chunks(stream: ServerStream, data: bytes, seed: int) -> list[int]:
    rng, boundaries, offset = random.Random(seed), [], 0
    while offset < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 1000])
        chunk = data[offset : offset + size]
        boundaries += [offset + b for b in stream.feed(chunk)]
        offset += len(chunk)
    return boundaries


@pytest.mark.parametrize("seed", range(8))
def test_boundaries_are_found_whatever_the_chunks(seed):
    stream = ServerStream()
    data = HANDSHAKE + SERVER_INIT + b"".join(MESSAGES)
    starts, offset = [], len(HANDSHAKE) + len(SERVER_INIT)
    for message in MESSAGES:
        starts.append(offset)
        offset += len(message)
    boundaries = feed_in_chunks(stream, data, seed)
    assert not stream.broken
    assert sorted(set(boundaries)) == [*starts, len(data)]
    assert (stream.width, stream.height, stream.name) == (100, 50, b"demo")  # resized by DesktopSize
    assert stream.at_boundary


def test_a_student_pixel_format_changes_how_raw_rectangles_are_read():
    server = ServerStream()
    client = ClientStream(server)
    server.feed(HANDSHAKE + SERVER_INIT)
    client.feed(b"RFB 003.008\n\x01\x01")
    client.feed(struct.pack(">B3x", 0) + PIXEL_FORMAT_16)
    assert server.server_init()[4:20] == PIXEL_FORMAT_16  # observers get the student's format
    assert server.at_boundary  # the next message starts with the next byte
    message = update(rect(0, 0, 3, 3, 0, b"p" * 18))  # 2 bytes a pixel now
    assert server.feed(message + b"\x02") == [len(message), len(message) + 1]


def test_an_unknown_encoding_or_message_marks_the_stream_broken():
    stream = ServerStream()
    stream.feed(HANDSHAKE + SERVER_INIT)
    stream.feed(update(rect(0, 0, 4, 4, 7, b"tight...")))  # Tight: never offered, cannot be followed
    assert stream.broken
    other = ServerStream()
    other.feed(HANDSHAKE + SERVER_INIT + b"\xfc")
    assert other.broken


def test_set_encodings_keeps_only_stateless_encodings_in_order():
    client = ClientStream(ServerStream())
    assert client.feed(b"RFB 003.008\n") == b"RFB 003.008\n"
    assert client.feed(b"\x01\x01") == b"\x01\x01"
    offered = [7, 16, 5, 1, 0, -223, -239, -258, -308, -312, -313, 0xC0A1E5CE - 2**32, -24, -250]
    message = struct.pack(f">BxH{len(offered)}i", 2, len(offered), *offered)
    sent = client.feed(message[:5]) + client.feed(message[5:])
    count = struct.unpack(">H", sent[2:4])[0]
    assert list(struct.unpack(f">{count}i", sent[4:])) == [5, 1, 0, -223, -239, -258, -308, -24, -250]


def test_client_messages_are_only_passed_on_whole():
    client = ClientStream(ServerStream())
    client.feed(b"RFB 003.008\n\x01\x01")
    key_event = struct.pack(">BBxxI", 4, 1, 0x61)
    assert client.feed(key_event[:3]) == b""
    assert client.feed(key_event[3:] + b"\x05\x00") == key_event  # a pointer event begins
    assert client.feed(b"\x00\x10\x00\x20") == b"\x05\x00\x00\x10\x00\x20"
    qemu_key = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)
    assert client.feed(qemu_key) == qemu_key


def test_the_observer_handshake_ends_with_the_students_server_init():
    server = ServerStream()
    server.feed(HANDSHAKE + SERVER_INIT)
    handshake = ObserverHandshake(server)
    assert handshake.greeting() == b"RFB 003.008\n"
    assert handshake.receive(b"RFB 003.00") == b""
    assert handshake.receive(b"8\n") == b"\x01\x01"
    assert handshake.receive(b"\x01\x01") == b"\0\0\0\0" + SERVER_INIT
    assert handshake.done
    assert handshake.receive(struct.pack(">BBxxI", 4, 1, 0x61)) == b""


def test_full_update_request_is_non_incremental():
    assert full_update_request(640, 480) == b"\x03\x00\x00\x00\x00\x00\x02\x80\x01\xe0"
