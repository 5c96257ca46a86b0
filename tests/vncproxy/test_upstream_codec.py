"""The upstream websocket on its own (websockets' sans-I/O protocol on an asyncio transport): handshake,
frames, keepalive and flow control against a hand-written API server.

The fake server is plain asyncio TCP on 127.0.0.1 that answers the upgrade with handcrafted bytes,
writes raw server frames (split, coalesced or malformed at will) and decodes the client's masked
frames. No cluster and no database.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest

from labs import cluster
from labs.exceptions import ClusterUnavailable
from vncproxy.upstream import (
    MAX_FRAME_BYTES,
    USER_AGENT,
    UpstreamConnection,
    UpstreamError,
    UpstreamFailed,
    UpstreamNotRunning,
    UpstreamUnavailable,
    open_upstream,
)

from .wire import Frame, accept_key, read_frame
from .wire import encode_frame as frame

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
TOKEN = "Bearer upstream-test-token"
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1"
QUERY = "?follow=true"
MIB = 1 << 20


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Peer:
    """The server's end of one connection, after the upgrade request was read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        request_line, *lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = request_line.split(" ")
        self.headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def accept_value(self) -> str:
        (key,) = self.header("Sec-WebSocket-Key")
        return accept_key(key)

    def upgrade_response(self, accept: str | None = None) -> bytes:
        return (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept or self.accept_value()}\r\n"
            "Sec-WebSocket-Protocol: plain.kubevirt.io\r\n"
            "\r\n"
        ).encode()

    async def write(self, data: bytes, piece: int | None = None) -> None:
        """Write `data` at once, or `piece` bytes at a time with a loop turn in between."""
        if piece is None:
            self.writer.write(data)
            await self.writer.drain()
            return
        for offset in range(0, len(data), piece):
            self.writer.write(data[offset : offset + piece])
            await self.writer.drain()
            await asyncio.sleep(0)

    async def read_frame(self) -> Frame:
        async with asyncio.timeout(5):
            return await read_frame(self.reader)

    async def at_eof(self) -> bool:
        """Whether the client closed the connection (after anything still unread)."""
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionResetError):
                await self.reader.read()
        return self.reader.at_eof()


class FakeApiServer:
    """A TCP server that hands each upgrade request to the test as a `Peer`."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.accepted: list[Peer] = []
        self.connections: list[UpstreamConnection] = []
        self.targets: list[dict[str, str]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for connection in self.connections:
            connection.abort()
        for peer in self.accepted:
            peer.writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        peer = Peer(reader, writer, head[:-4])
        self.accepted.append(peer)
        await self.peers.put(peer)

    async def accept(self) -> Peer:
        async with asyncio.timeout(5):
            return await self.peers.get()

    def target(self, *, namespace: str, name: str, kind: str) -> cluster.WebsocketTarget:
        self.targets.append({"namespace": namespace, "name": name, "kind": kind})
        path = f"{SUBRESOURCES}/namespaces/{namespace}/virtualmachineinstances/{name}/{kind}"
        return cluster.WebsocketTarget(
            url=f"ws://127.0.0.1:{self.port}{path}{QUERY}",
            ssl=None,
            headers={"Authorization": TOKEN},
            server_hostname=None,
        )


class Sink:
    """Collects what an upstream delivers."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.causes: list[str] = []
        self.writable_calls = 0
        self.on_data: Callable[[], None] | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def upstream_data(self, chunks: list[memoryview]) -> None:
        data = b"".join(chunks)
        self.chunks.append(data)
        self.size += len(data)
        if self.on_data is not None:
            self.on_data()

    def upstream_writable(self) -> None:
        self.writable_calls += 1

    def upstream_closed(self, cause: str) -> None:
        self.causes.append(cause)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


@pytest.fixture
async def api(monkeypatch) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    monkeypatch.setattr(cluster, "subresource_websocket_target", server.target)
    yield server
    await server.stop()


async def connect(
    server: FakeApiServer, *, after_upgrade: bytes = b"", kind: str = "vnc", piece: int | None = None
) -> tuple[UpstreamConnection, Peer]:
    """An open upstream and the server's end of it; `after_upgrade` goes out in the 101's write."""
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind=kind))
    peer = await server.accept()
    await peer.write(peer.upgrade_response() + after_upgrade, piece)
    async with asyncio.timeout(5):
        connection = await opening
    server.connections.append(connection)
    return connection, peer


async def attached(server: FakeApiServer, **kwargs) -> tuple[UpstreamConnection, Peer, Sink]:
    connection, peer = await connect(server, **kwargs)
    sink = Sink()
    connection.attach(sink)
    return connection, peer, sink


async def refusal(server: FakeApiServer, *writes: bytes) -> tuple[UpstreamError, Peer]:
    """The error `open_upstream` raises when the server answers with `writes`, one at a time."""
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind="vnc"))
    peer = await server.accept()
    for data in writes:
        await peer.write(data)
        await asyncio.sleep(0.02)
    with pytest.raises(UpstreamError) as caught:
        async with asyncio.timeout(5):
            await opening
    return caught.value, peer


def http_response(status: str, body: bytes) -> tuple[bytes, bytes]:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


# -- the upgrade request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "subresource"), [("vnc", "vnc"), ("serial", "console")])
async def test_request_carries_path_token_agent_and_subprotocol(api, kind, subresource):
    _, peer = await connect(api, kind=kind)
    assert api.targets == [{"namespace": "course-a", "name": "vm0", "kind": subresource}]
    assert (peer.method, peer.version) == ("GET", "HTTP/1.1")
    assert (
        peer.target == f"{SUBRESOURCES}/namespaces/course-a/virtualmachineinstances/vm0/{subresource}{QUERY}"
    )
    assert peer.header("Host") == [f"127.0.0.1:{api.port}"]
    assert peer.header("Authorization") == [TOKEN]
    assert peer.header("User-Agent") == [USER_AGENT]
    assert peer.header("Sec-WebSocket-Protocol") == ["plain.kubevirt.io"]
    assert peer.header("Upgrade") == ["websocket"]
    assert peer.header("Sec-WebSocket-Version") == ["13"]
    assert peer.header("Sec-WebSocket-Extensions") == []


# -- frames from the server ------------------------------------------------------------------------------


async def test_frames_in_the_upgrade_write_are_delivered_on_attach(api):
    first, second = b"RFB 003.008\n", bytes(range(256)) * 3
    connection, _ = await connect(api, after_upgrade=frame(OP_BINARY, first) + frame(OP_BINARY, second))
    await asyncio.sleep(0.05)
    sink = Sink()
    connection.attach(sink)
    assert sink.data == first + second
    assert sink.causes == []


async def test_large_frame_in_the_upgrade_write_is_delivered_after_attach(api):
    payload = bytes(range(251)) * (MIB // 251)
    connection, _ = await connect(api, after_upgrade=frame(OP_BINARY, payload))
    await asyncio.sleep(0.05)
    sink = Sink()
    connection.attach(sink)
    await until(lambda: sink.size >= len(payload))
    assert sink.data == payload


async def test_upgrade_response_in_small_pieces(api):
    payload = b"after a slow 101"
    _, _, sink = await attached(api, after_upgrade=frame(OP_BINARY, payload), piece=7)
    await until(lambda: sink.size >= len(payload))
    assert sink.data == payload


@pytest.mark.parametrize("size", [125, 300, 65535, 65536, MIB], ids=lambda size: f"{size}B")
async def test_frame_written_in_small_pieces_arrives_byte_exact(api, size):
    connection, peer, sink = await attached(api)
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    data = frame(OP_BINARY, payload)
    header_size = len(data) - size
    await peer.write(data[:header_size], piece=1)
    await peer.write(data[header_size:], piece=1000)
    await until(lambda: sink.size >= size)
    assert sink.data == payload
    assert not connection.closed


async def test_a_frame_over_the_limit_ends_the_stream_with_1009(api):
    connection, peer, sink = await attached(api)
    await peer.write(frame(OP_BINARY, b"before") + frame(OP_BINARY, bytes(MAX_FRAME_BYTES + 1)))
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload[:2]) == (OP_CLOSE, close_payload(1009))
    # Closed with the oversized frame unread, so the kernel may reset rather than end the connection.
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(5):
            await peer.reader.read()
    await until(lambda: bool(sink.causes))
    assert sink.data == b"before"
    assert "protocol error" in sink.causes[0]
    assert connection.closed


async def test_many_small_frames_in_one_write_arrive_as_one_stream(api):
    _, peer, sink = await attached(api)
    payloads = [bytes([n % 256]) * (n % 200) for n in range(2000)]
    await peer.write(b"".join(frame(OP_BINARY, payload) for payload in payloads))
    expected = b"".join(payloads)
    await until(lambda: sink.size >= len(expected))
    assert sink.data == expected


async def test_fragmented_binary_delivered_and_text_dropped(api):
    _, peer, sink = await attached(api)
    await peer.write(
        frame(OP_BINARY, b"ab", fin=False)
        + frame(OP_CONTINUATION, b"cd", fin=False)
        + frame(OP_PING, b"mid-message")
        + frame(OP_CONTINUATION, b"ef")
        + frame(OP_TEXT, b"dropped text")
        + frame(OP_TEXT, b"dropped ", fin=False)
        + frame(OP_PING, b"mid-text")
        + frame(OP_CONTINUATION, b"fragmented ", fin=False)
        + frame(OP_CONTINUATION, b"text")
        + frame(OP_BINARY, b"gh")
    )
    await until(lambda: sink.size >= 8)
    await asyncio.sleep(0.05)
    assert sink.data == b"abcdefgh"
    assert [(await peer.read_frame()).payload for _ in range(2)] == [b"mid-message", b"mid-text"]


async def test_ping_is_answered_with_a_masked_pong(api):
    _, peer, sink = await attached(api)
    await peer.write(frame(OP_PING, b"are you there") + frame(OP_BINARY, b"data"))
    pong = await peer.read_frame()
    assert (pong.fin, pong.opcode, pong.payload) == (True, OP_PONG, b"are you there")
    assert pong.mask is not None
    await until(lambda: sink.size >= 4)
    assert sink.data == b"data"


async def test_pong_from_the_server_is_ignored(api):
    _, peer, sink = await attached(api)
    await peer.write(frame(OP_PONG, b"unsolicited") + frame(OP_BINARY, b"x") + frame(OP_PING, b"second"))
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload) == (OP_PONG, b"second")
    await until(lambda: sink.size >= 1)
    assert sink.data == b"x"
    assert sink.causes == []


async def test_close_from_the_server_is_answered_and_reported_once(api):
    connection, peer, sink = await attached(api)
    await peer.write(frame(OP_BINARY, b"last") + frame(OP_CLOSE, close_payload(1001, b"going away")))
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload[:2]) == (OP_CLOSE, close_payload(1001))  # the code echoed
    assert reply.mask is not None
    assert await peer.at_eof()
    await asyncio.sleep(0.05)
    assert sink.data == b"last"
    assert len(sink.causes) == 1
    assert "1001" in sink.causes[0]
    assert connection.closed
    assert connection.transport is not None and connection.transport.is_closing()
    connection.send(b"after the close")
    await asyncio.sleep(0.02)
    assert peer.reader.at_eof()


async def test_close_without_a_code_is_answered_without_one(api):
    _, peer, sink = await attached(api)
    await peer.write(frame(OP_CLOSE))
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload) == (OP_CLOSE, b"")
    assert await peer.at_eof()
    assert len(sink.causes) == 1
    assert "1005" in sink.causes[0]


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param(frame(OP_CLOSE, close_payload(1000)), id="close"),
        pytest.param(frame(0x3, b"bad"), id="protocol-error"),
    ],
)
async def test_end_in_the_upgrade_write_is_reported_once_on_attach(api, ending):
    connection, peer = await connect(api, after_upgrade=frame(OP_BINARY, b"early") + ending)
    sink = Sink()
    connection.attach(sink)
    assert sink.data == b"early"
    assert await peer.at_eof()
    await asyncio.sleep(0.05)
    assert len(sink.causes) == 1


@pytest.mark.parametrize(
    "bad_frame",
    [
        pytest.param(frame(OP_BINARY, b"masked", mask=b"\x01\x02\x03\x04"), id="masked"),
        pytest.param(frame(OP_BINARY, b"rsv1", rsv=0x40), id="rsv1"),
        pytest.param(frame(OP_BINARY, b"rsv3", rsv=0x10), id="rsv3"),
        pytest.param(frame(0x3, b"reserved data opcode"), id="opcode-3"),
        pytest.param(frame(0xB, b"reserved control opcode"), id="opcode-b"),
        pytest.param(frame(OP_PING, bytes(126)), id="ping-126-bytes"),
        pytest.param(frame(OP_PING, b"split", fin=False), id="fragmented-ping"),
    ],
)
async def test_protocol_error_closes_with_1002(api, bad_frame):
    connection, peer, sink = await attached(api)
    await peer.write(frame(OP_BINARY, b"before") + bad_frame + frame(OP_BINARY, b"after"))
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload[:2]) == (OP_CLOSE, close_payload(1002))
    assert await peer.at_eof()
    await asyncio.sleep(0.05)
    assert sink.data == b"before"
    assert len(sink.causes) == 1
    assert "protocol error" in sink.causes[0]
    assert connection.closed


async def test_server_closing_tcp_without_close_frame_ends_the_stream(api):
    connection, peer, sink = await attached(api)
    await peer.write(frame(OP_BINARY, b"bye"))
    await until(lambda: sink.size >= 3)
    peer.writer.close()
    await until(lambda: bool(sink.causes))
    await asyncio.sleep(0.05)
    assert sink.causes == ["the API server closed the connection without a close frame"]
    assert connection.closed
    assert connection.transport is not None and connection.transport.is_closing()
    assert await peer.at_eof()


async def test_data_then_end_of_stream_before_attach_are_both_delivered(api):
    connection, peer = await connect(api, after_upgrade=frame(OP_BINARY, b"early"))
    peer.writer.close()
    await asyncio.sleep(0.05)
    sink = Sink()
    connection.attach(sink)
    await until(lambda: bool(sink.causes))
    assert sink.data == b"early"
    assert len(sink.causes) == 1


# -- frames to the server --------------------------------------------------------------------------------


async def test_send_writes_masked_binary_frames_of_every_length_header(api):
    connection, peer, _ = await attached(api)
    payloads = [bytes(range(10)), b"m" * 300, bytes(range(256)) * 273 + b"tail"]
    for payload in payloads:
        connection.send(payload)
    frames = [await peer.read_frame() for _ in payloads]
    assert [(f.fin, f.rsv, f.opcode) for f in frames] == [(True, 0, OP_BINARY)] * 3
    assert [f.payload for f in frames] == payloads
    assert [f.length_field for f in frames] == [7, 16, 64]
    assert all(f.mask is not None for f in frames)
    assert len({f.mask for f in frames}) == 3


async def test_send_accepts_a_memoryview(api):
    connection, peer, _ = await attached(api)
    connection.send(memoryview(b"0123456789")[2:6])
    assert (await peer.read_frame()).payload == b"2345"


async def test_close_sends_a_close_frame_and_ends_the_connection(api):
    connection, peer, _ = await attached(api)
    connection.close()
    reply = await peer.read_frame()
    assert (reply.opcode, reply.payload) == (OP_CLOSE, close_payload(1000))
    assert await peer.at_eof()


# -- flow control ----------------------------------------------------------------------------------------


async def test_write_buffer_above_the_limit_pauses_the_relay_until_drained(api, settings):
    settings.CONSOLE_BUFFER_BYTES = 64 * 1024
    connection, peer, sink = await attached(api)
    chunk = b"w" * (256 * 1024)
    sent = 0
    while connection.writable and sent < 256 * MIB:
        connection.send(chunk)
        sent += len(chunk)
    assert not connection.writable
    received = 0
    while received < sent:
        received += len((await peer.read_frame()).payload)
    async with asyncio.timeout(5):
        await connection.drained()
    assert connection.writable
    assert sink.writable_calls == 1


async def test_pause_reading_holds_frames_until_resumed(api):
    connection, peer, sink = await attached(api)
    sink.on_data = connection.pause_reading
    await peer.write(frame(OP_BINARY, b"first"))
    await until(lambda: sink.size >= 5)
    await peer.write(frame(OP_BINARY, b"second"))
    await asyncio.sleep(0.1)
    assert sink.data == b"first"
    sink.on_data = None
    connection.resume_reading()
    await until(lambda: sink.size >= 11)
    assert sink.data == b"firstsecond"


async def test_pause_during_attach_delivery_holds(api):
    connection, peer = await connect(api, after_upgrade=frame(OP_BINARY, b"early"))
    sink = Sink()
    sink.on_data = connection.pause_reading
    connection.attach(sink)
    assert sink.data == b"early"
    await peer.write(frame(OP_BINARY, b"later"))
    await asyncio.sleep(0.1)
    assert sink.data == b"early"
    sink.on_data = None
    connection.resume_reading()
    await until(lambda: sink.size >= 10)
    assert sink.data == b"earlylater"


# -- keepalive -------------------------------------------------------------------------------------------


async def test_pings_go_out_every_interval_and_pongs_keep_the_stream(api, settings):
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0.2
    connection, peer, sink = await attached(api)
    started = time.monotonic()
    for _ in range(3):
        ping = await peer.read_frame()
        assert ping.opcode == OP_PING and ping.mask is not None and len(ping.payload) == 4
        await peer.write(frame(OP_PONG, ping.payload))
    assert time.monotonic() - started >= 0.5
    assert sink.causes == [] and not connection.closed


async def test_an_unanswered_ping_ends_the_stream_at_the_next_one(api, settings):
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0.2
    connection, peer, sink = await attached(api)
    assert (await peer.read_frame()).opcode == OP_PING
    await until(lambda: bool(sink.causes))
    assert sink.causes == ["no answer to a keepalive ping within 0.2 s"]
    assert connection.closed


async def test_an_unanswered_ping_while_reading_is_paused_is_forgiven(api, settings):
    """The pong may be waiting behind data the browser has not taken yet."""
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0.2
    connection, peer, sink = await attached(api)
    connection.pause_reading()
    await asyncio.sleep(0.7)
    assert sink.causes == [] and not connection.closed
    connection.resume_reading()
    deadline = time.monotonic() + 0.7
    while time.monotonic() < deadline:  # answering from now on (the first pings queued meanwhile)
        ping = await peer.read_frame()
        await peer.write(frame(OP_PONG, ping.payload))
    assert sink.causes == [] and not connection.closed


async def test_no_pings_when_the_interval_is_zero(api, settings):
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0
    connection, peer, _ = await attached(api)
    connection.send(b"data")
    assert (await peer.read_frame()).payload == b"data"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await read_frame(peer.reader)
    assert not connection.closed


# -- the handshake failing -------------------------------------------------------------------------------


async def test_http_400_means_not_running_with_the_body(api):
    head, body = http_response("400 Bad Request", b"VMI is not running")
    error, peer = await refusal(api, head + body)
    assert isinstance(error, UpstreamNotRunning)
    assert error.message == "The machine is not running."
    assert error.cluster_reason == "VMI is not running"
    assert await peer.at_eof()


async def test_http_409_means_failed_with_the_status_message(api):
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vm0": '
        "VMI is in failed status",
        "reason": "Conflict",
        "code": 409,
    }
    body = json.dumps(status).encode()
    head = (
        f"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    error, _ = await refusal(api, head + body)
    assert type(error) is UpstreamFailed
    assert error.message == "The machine has failed; stop the lab and start it again."
    assert error.cluster_reason == status["message"]


async def test_http_403_is_unavailable(api):
    head, body = http_response("403 Forbidden", b"forbidden: cannot get virtualmachineinstances/vnc")
    error, peer = await refusal(api, head + body)
    assert type(error) is UpstreamUnavailable
    assert "403" in error.message
    assert await peer.at_eof()


@pytest.mark.parametrize(
    ("status", "error_type", "text"),
    [
        ("400 Bad Request", UpstreamNotRunning, "VMI is not running"),
        ("503 Unavailable", UpstreamUnavailable, "503"),
    ],
)
async def test_error_body_in_a_second_write(api, status, error_type, text):
    head, body = http_response(status, b"VMI is not running")
    error, _ = await refusal(api, head, body)
    assert type(error) is error_type
    assert text in f"{error.message} {error.cluster_reason}"


async def test_error_response_without_length_ends_with_the_connection(api):
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind="vnc"))
    peer = await api.accept()
    await peer.write(head)
    await asyncio.sleep(0.02)
    await peer.write(b"VMI is not running")
    peer.writer.close()
    with pytest.raises(UpstreamNotRunning) as caught:
        async with asyncio.timeout(5):
            await opening
    assert caught.value.cluster_reason == "VMI is not running"


async def test_wrong_accept_is_unavailable(api):
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind="vnc"))
    peer = await api.accept()
    await peer.write(peer.upgrade_response(accept=base64.b64encode(b"x" * 20).decode()))
    with pytest.raises(UpstreamUnavailable):
        async with asyncio.timeout(5):
            await opening
    assert await peer.at_eof()


async def test_server_closing_during_the_handshake_is_unavailable(api):
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind="vnc"))
    peer = await api.accept()
    peer.writer.close()
    with pytest.raises(UpstreamUnavailable):
        async with asyncio.timeout(5):
            await opening


async def test_silent_server_times_out_as_unavailable(api, settings):
    settings.CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS = 0.5
    started = time.monotonic()
    opening = asyncio.create_task(open_upstream(namespace="course-a", name="vm0", kind="vnc"))
    peer = await api.accept()
    with pytest.raises(UpstreamUnavailable):
        async with asyncio.timeout(5):
            await opening
    assert 0.4 < time.monotonic() - started < 2
    assert await peer.at_eof()


async def test_nothing_listening_is_unavailable(api):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        api.port = probe.getsockname()[1]
    with pytest.raises(UpstreamUnavailable):
        async with asyncio.timeout(5):
            await open_upstream(namespace="course-a", name="vm0", kind="vnc")


async def test_cluster_misconfiguration_is_unavailable(monkeypatch):
    def misconfigured(**kwargs):
        raise ClusterUnavailable("The cluster connection is misconfigured: no kubeconfig")

    monkeypatch.setattr(cluster, "subresource_websocket_target", misconfigured)
    with pytest.raises(UpstreamUnavailable) as caught:
        await open_upstream(namespace="course-a", name="vm0", kind="serial")
    assert "misconfigured" in caught.value.message
