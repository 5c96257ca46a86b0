"""End to end through the real app server (uvicorn's websockets-sansio, as deployed): browser frames.

A raw websocket client on a plain TCP connection writes handcrafted frames, split across TCP reads
or packed into one, to the echo console of the local cluster's `none` runtime, and decodes what the
server sends back: binary data must come back byte for byte, text frames must be dropped, pings
answered, close frames answered, and protocol errors must close the connection with 1002.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from .app_server import run_console_server, use_file_sqlite_test_database
from .conftest import BANNER_PREFIX, console_path, session_cookie
from .wire import accept_key, encode_frame, read_frame

# Collected before any test runs, so before the test database is created.
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"vncproxy-test-{os.getpid()}.sqlite3")

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1 = 0x40


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("server") / "server.log"
    print(f"server log: {log}")
    return log


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, local_cluster, server_log):
    with run_console_server(django_db_blocker, local_cluster, server_log) as server:
        yield server


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """One client frame, masked with a fresh key unless `masked` is False."""
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=os.urandom(4) if masked else None)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class RawWebSocket:
    """A websocket client that writes whatever bytes it is given and decodes the server's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.data = bytearray()  # binary payload bytes received and not yet taken
        self.pongs: list[bytes] = []
        self.texts: list[bytes] = []
        self.close: tuple[int, str] | None = None
        self.ended: str | None = None  # "eof" or "reset" once the server has ended the connection

    @classmethod
    async def connect(cls, address: str, path: str, cookie: bytes) -> RawWebSocket:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {address}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Origin: http://{address}\r\n"
            f"Cookie: {cookie.decode()}\r\n"
            "\r\n"
        )
        writer.write(request.encode())
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status, *header_lines = response.decode("latin-1").split("\r\n")
        assert status.startswith("HTTP/1.1 101 "), response
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        assert headers["sec-websocket-accept"] == accept_key(key)
        assert headers["upgrade"].lower() == "websocket"
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_in_pieces(self, data: bytes, size: int) -> None:
        """`data` in writes of `size` bytes, each given time to arrive in a TCP read of its own."""
        for offset in range(0, len(data), size):
            await self.send(data[offset : offset + size])
            await asyncio.sleep(0.002)

    async def _read_frame(self) -> bool:
        """Decode one server frame into this client's state; False once the connection has ended."""
        try:
            received = await read_frame(self.reader)
        except asyncio.IncompleteReadError as error:
            assert not error.partial, f"the connection ended inside a frame: {error.partial!r}"
            self.ended = "eof"
            return False
        except ConnectionResetError:
            self.ended = "reset"
            return False
        assert received.mask is None, "the server masked a frame"
        assert not received.rsv, "the server set RSV bits"
        assert received.fin, "the server fragmented a message"
        opcode, payload = received.opcode, received.payload
        if opcode == BINARY:
            self.data += payload
        elif opcode == TEXT:
            self.texts.append(payload)
        elif opcode == PONG:
            self.pongs.append(payload)
        elif opcode == PING:
            await self.send(frame(PONG, payload))
        elif opcode == CLOSE:
            assert self.close is None, "a second close frame"
            code = struct.unpack("!H", payload[:2])[0] if payload else 1005  # 1005: no code given
            self.close = (code, payload[2:].decode())
        else:
            pytest.fail(f"unexpected opcode {opcode:#x}")
        return True

    async def read_until(self, done: Callable[[], bool]) -> None:
        """Read frames until `done()` is true; fails if the connection ends first."""
        async with asyncio.timeout(TIMEOUT):
            while not done():
                assert await self._read_frame(), f"the connection ended ({self.ended}), close={self.close}"

    async def read_to_end(self) -> None:
        """Read frames until the server ends the connection."""
        try:
            async with asyncio.timeout(TIMEOUT):
                while await self._read_frame():
                    pass
        except TimeoutError:
            pytest.fail(f"still open after {TIMEOUT}s; received {bytes(self.data)!r}, close={self.close}")

    async def take(self, size: int) -> bytes:
        await self.read_until(lambda: len(self.data) >= size)
        taken = bytes(self.data[:size])
        del self.data[:size]
        return taken

    async def read_banner(self) -> None:
        await self.read_until(lambda: b"\r\n" in self.data)
        line, _, rest = bytes(self.data).partition(b"\r\n")
        assert line.startswith(BANNER_PREFIX), line
        self.data[:] = rest

    async def expect_echo(self, expected: bytes) -> None:
        echoed = await self.take(len(expected))
        assert echoed == expected
        assert self.texts == []

    def abort(self) -> None:
        self.writer.transport.abort()


@pytest.fixture
async def console(server, instance, student):
    """Opens raw connections to `student`'s console on `instance`, the banner already read."""
    cookie = await database_sync_to_async(session_cookie)(student)
    opened: list[RawWebSocket] = []

    async def open_console() -> RawWebSocket:
        client = await RawWebSocket.connect(server.address, console_path(instance.pk), cookie)
        opened.append(client)
        await client.read_banner()
        return client

    yield open_console
    for client in opened:
        client.abort()


async def test_frames_split_across_reads_are_echoed_exactly(console):
    client = await console()
    one_byte_writes = os.urandom(41)
    await client.send_in_pieces(frame(BINARY, one_byte_writes), 1)
    await client.expect_echo(one_byte_writes)

    large = os.urandom(200 * 1024)  # a 64-bit length
    await asyncio.gather(client.send_in_pieces(frame(BINARY, large), 1000), client.expect_echo(large))

    medium = os.urandom(300)  # a 16-bit length
    await client.send_in_pieces(frame(BINARY, medium), 7)
    await client.expect_echo(medium)


async def test_many_frames_in_one_write_are_echoed_in_order(console):
    client = await console()
    payloads = [os.urandom(7) for _ in range(500)]
    await client.send(b"".join(frame(BINARY, payload) for payload in payloads))
    await client.expect_echo(b"".join(payloads))


FRAGMENTED_AND_TEXT = (
    [
        frame(BINARY, b"first "),
        frame(TEXT, b"a text frame"),
        frame(BINARY, b"fragmented ", fin=False),
        frame(CONTINUATION, b"binary ", fin=False),
        frame(CONTINUATION, b"message "),
        frame(TEXT, b"fragmented ", fin=False),
        frame(CONTINUATION, b"text ", fin=False),
        frame(CONTINUATION, b"message"),
        frame(BINARY, b"last"),
    ],
    b"first fragmented binary message last",
)


@pytest.mark.parametrize("piece_size", [None, 3], ids=["one-write", "three-byte-writes"])
async def test_fragmented_binary_is_echoed_whole_and_text_is_dropped(console, piece_size):
    client = await console()
    frames, expected = FRAGMENTED_AND_TEXT
    if piece_size is None:
        await client.send(b"".join(frames))
    else:
        await client.send_in_pieces(b"".join(frames), piece_size)
    # The echo is read to its last byte: text that had been relayed would have shifted it.
    await client.expect_echo(expected)


@pytest.mark.parametrize("piece_size", [None, 1], ids=["one-write", "one-byte-writes"])
async def test_pings_inside_and_between_messages_get_pongs(console, piece_size):
    client = await console()
    data = (
        frame(BINARY, b"begun ", fin=False)
        + frame(PING, b"inside a message")
        + frame(CONTINUATION, b"and ended ")
        + frame(PING, b"between frames")
        + frame(BINARY, b"after")
    )
    if piece_size is None:
        await client.send(data)
    else:
        await client.send_in_pieces(data, piece_size)
    await client.expect_echo(b"begun and ended after")
    await client.read_until(lambda: len(client.pongs) == 2)
    assert client.pongs == [b"inside a message", b"between frames"]


@pytest.mark.parametrize("piece_size", [None, 1], ids=["one-write", "one-byte-writes"])
async def test_close_frame_gets_a_close_frame_back(console, piece_size):
    client = await console()
    await client.send(frame(BINARY, b"before closing"))
    await client.expect_echo(b"before closing")
    if piece_size is None:
        await client.send(close_frame(1000, "bye"))
    else:
        await client.send_in_pieces(close_frame(1000, "bye"), piece_size)
    await client.read_to_end()
    assert client.close == (1000, "bye")  # the code (and reason) echoed
    assert client.ended == "eof"
    assert client.data == bytearray()


# Each bad frame, with what it follows in its write.
PROTOCOL_ERRORS = {
    "unmasked": frame(BINARY, b"not masked", masked=False),
    "rsv1": frame(BINARY, b"compressed?", rsv=RSV1),
    "opcode-3": frame(0x3, b"reserved"),
    "continuation-without-message": frame(CONTINUATION, b"of nothing"),
    "ping-over-125-bytes": frame(PING, bytes(126)),
    "fragmented-ping": frame(PING, b"ping", fin=False),
    "binary-frame-inside-a-message": frame(BINARY, b"begun", fin=False) + frame(BINARY, b"a new message"),
    "text-frame-inside-a-message": frame(BINARY, b"begun", fin=False) + frame(TEXT, b"a new message"),
}


async def console_closed_bytes_up(log: Path, instance_id: int) -> int:
    """`bytes_up` of the server's "console closed" log line for the instance's (only) connection."""
    pattern = re.compile(rf"console closed: .* instance={instance_id} .* bytes_up=(\d+) ")
    async with asyncio.timeout(TIMEOUT):
        while not (match := pattern.search(log.read_text())):
            await asyncio.sleep(0.02)
    return int(match[1])


@pytest.mark.parametrize("bad_frame", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
async def test_protocol_error_closes_the_connection_with_1002(console, server_log, instance, bad_frame):
    client = await console()
    await client.send(frame(BINARY, b"sent before"))
    await client.expect_echo(b"sent before")
    await client.send(frame(BINARY, b"same write") + bad_frame)
    await client.read_to_end()
    # websockets fails the connection with a close frame (1002) and uvicorn ends it; uvicorn drops
    # the frames the failing read brought before the bad one, so only the first write reached the
    # machine, and its echo is all the client got.
    assert client.close is not None and client.close[0] == 1002, client.close
    assert client.ended == "eof"
    assert bytes(client.data) == b""
    assert await console_closed_bytes_up(server_log, instance.pk) == len(b"sent before")
