"""Frame headers (vncproxy/frames.py) against RFC 6455's layouts, written out by hand."""

from __future__ import annotations

import pytest

from vncproxy.frames import OP_BINARY, OP_CLOSE, OP_PING, Header, frame_header, read_header

MASK = b"\x01\x02\x03\x04"


@pytest.mark.parametrize(
    ("opcode", "length", "mask", "expected"),
    [
        (OP_BINARY, 0, b"", b"\x82\x00"),
        (OP_BINARY, 125, b"", b"\x82\x7d"),
        (OP_BINARY, 126, b"", b"\x82\x7e\x00\x7e"),
        (OP_BINARY, 65535, b"", b"\x82\x7e\xff\xff"),
        (OP_BINARY, 65536, b"", b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (OP_PING, 5, MASK, b"\x89\x85" + MASK),
        (OP_CLOSE, 300, MASK, b"\x88\xfe\x01\x2c" + MASK),
    ],
)
def test_frame_header_layouts(opcode, length, mask, expected):
    assert frame_header(opcode, length, mask) == expected
    assert read_header(expected, 0, len(expected)) == Header(
        fin=True, rsv=0, opcode=opcode, masked=bool(mask), length=length, size=len(expected)
    )


def test_incomplete_headers_are_none_at_every_cut():
    data = b"garbage" + frame_header(OP_BINARY, 70000, MASK)
    for end in range(7, len(data)):
        assert read_header(data, 7, end) is None
    assert read_header(data, 7, len(data)).length == 70000


def test_fin_and_reserved_bits_are_reported():
    header = read_header(b"\x42\x03abc", 0, 5)  # RSV1 set, FIN clear, binary, 3 bytes
    assert (header.fin, header.rsv, header.opcode, header.length, header.size) == (False, 0x40, 2, 3, 2)
