"""End to end: real websockets through the real app server process (uvicorn, as deployed) to the
local cluster.

Exercises what only a real server shows: close reasons on the wire, flow control (a browser that
stops or slows down reading must slow the machine, not grow the server), and the relay over TCP.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from vncproxy.tickets import ticket_issue

from .app_server import run_console_server, use_file_sqlite_test_database
from .conftest import BANNER_PREFIX, console_path, session_cookie

# Collected before any test runs, so before the test database is created.
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"vncproxy-test-{os.getpid()}.sqlite3")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, local_cluster, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    print(f"server log: {log}")
    with run_console_server(django_db_blocker, local_cluster, log) as server:
        yield server


def ws(server, path: str, cookie: bytes | None = None):
    headers = {"Origin": f"http://{server.address}"}  # a page of the server's own origin
    if cookie:
        headers["Cookie"] = cookie.decode()
    url = f"ws://{server.address}{path}"
    return connect(url, additional_headers=headers, max_size=None, compression=None)


async def recv_exactly(conn, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await asyncio.wait_for(conn.recv(decode=False), 10)
    return bytes(data)


async def test_echo_of_four_mebibytes_and_reasons_on_the_wire(server, instance, student, other_student):
    cookie = await database_sync_to_async(session_cookie)(student)
    async with ws(server, console_path(instance.pk), cookie) as conn:
        assert (await conn.recv(decode=False)).startswith(BANNER_PREFIX)
        payload = os.urandom(4 * 1024 * 1024)

        async def send_all() -> None:
            for offset in range(0, len(payload), 65536):
                await conn.send(payload[offset : offset + 65536])

        sender = asyncio.create_task(send_all())
        assert await recv_exactly(conn, len(payload)) == payload
        await sender
    cookie = await database_sync_to_async(session_cookie)(other_student)
    async with ws(server, console_path(instance.pk), cookie) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await conn.recv()
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "This lab instance is not yours.")


async def test_ticket_over_the_server_is_single_use(server, instance, student):
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="vnc"
    )
    async with ws(server, console_path(instance.pk, kind="vnc", ticket=value)) as conn:
        assert await recv_exactly(conn, 12) == b"RFB 003.008\n"
    async with ws(server, console_path(instance.pk, kind="vnc", ticket=value)) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await conn.recv()
    assert closed.value.rcvd.code == 4401
    # The server's access log names the path; the ticket in its query string is redacted.
    log = server.log_file.read_text()
    assert "ticket=[REDACTED]" in log
    assert value not in log


async def test_replacement_and_upstream_drop_over_the_server(server, instance, student, app_cluster):
    cookie = await database_sync_to_async(session_cookie)(student)
    async with ws(server, console_path(instance.pk), cookie) as first:
        assert (await first.recv(decode=False)).startswith(BANNER_PREFIX)
        async with ws(server, console_path(instance.pk), cookie) as second:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(first.recv(), 5)
            assert closed.value.rcvd.code == 4001
            assert closed.value.rcvd.reason == "Replaced by a newer connection to this console."
            assert (await second.recv(decode=False)).startswith(BANNER_PREFIX)
    app_cluster.faults.drop_websocket(kind="console", after_bytes=5)
    async with ws(server, console_path(instance.pk), cookie) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(conn.recv(), 5)
    assert closed.value.rcvd.code == 4502


async def test_a_browser_that_stops_reading_stops_the_stream_not_the_server(server, instance, student):
    """Backpressure end to end: the client writes 128 MiB into the echo console and reads nothing.
    The proxy must stop reading it after a bounded amount, and its memory must not grow with it.

    The bound is loose on purpose: besides the proxy's own 2 x 256 KiB, four loopback TCP legs
    (browser-proxy and proxy-cluster, both directions) each buffer up to several MiB through kernel
    autotuning. What matters is that the writer stalls and stays stalled."""
    rss_before = server.rss_bytes()
    cookie = await database_sync_to_async(session_cookie)(student)
    async with ws(server, console_path(instance.pk), cookie) as conn:
        assert (await conn.recv(decode=False)).startswith(BANNER_PREFIX)
        total, chunk = 128 * 1024 * 1024, os.urandom(65536)
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            while sent < total:
                await conn.send(chunk)
                sent += len(chunk)

        sender = asyncio.create_task(send_all())
        await asyncio.sleep(3)
        stalled_at = sent
        await asyncio.sleep(2)
        assert sent == stalled_at, "the proxy kept reading from a client that reads nothing"
        assert stalled_at < total // 2, "the proxy read far more than its buffers hold"
        growth = server.rss_bytes() - rss_before
        assert growth < 32 * 1024 * 1024, f"the proxy grew by {growth / 2**20:.0f} MiB"
        # Reading resumes the flow, and every byte arrives.
        received = 0
        while received < total:
            received += len(await asyncio.wait_for(conn.recv(decode=False), 10))
        await sender
        assert received == total


async def test_a_slow_browser_keeps_the_servers_memory_bounded(server, instance, student):
    """Both echo consoles of the instance flooded as fast as the client writes while it reads only a
    message every 20 ms: the machine's side (the echo) must be held to the browser's pace, and the
    server's memory must stay flat however much is written. Without backpressure through the whole
    path (Daphne over plain ASGI, for one), the server grows by most of what the client writes.

    As in the test above, the loopback TCP buffers of the four legs and the local cluster hold up to
    several MiB each, hence the loose bound on what is in flight; the server's own growth is the
    point (about 9 MiB at the peak here)."""
    rss_before = server.rss_bytes()
    cookie = await database_sync_to_async(session_cookie)(student)
    peak = rss_before
    flooding = True

    async def sample() -> None:
        nonlocal peak
        while flooding:
            peak = max(peak, server.rss_bytes())
            await asyncio.sleep(0.1)

    async def flood(machine: str) -> tuple[int, int]:
        async with ws(server, console_path(instance.pk, machine=machine), cookie) as conn:
            assert (await conn.recv(decode=False)).startswith(BANNER_PREFIX)
            chunk, sent, received = os.urandom(65536), 0, 0

            async def write() -> None:
                nonlocal sent
                while True:
                    await conn.send(chunk)
                    sent += len(chunk)

            writer = asyncio.create_task(write())
            deadline = asyncio.get_running_loop().time() + 6
            while asyncio.get_running_loop().time() < deadline:
                received += len(await asyncio.wait_for(conn.recv(decode=False), 10))
                await asyncio.sleep(0.02)
            writer.cancel()
            return sent, received

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.gather(flood("vm0"), flood("text"))
    finally:
        flooding = False
        await sampler
    for sent, received in results:
        assert received > 0
        in_flight = sent - received
        # About 50 MiB here (an unthrottled writer gets well over 500 MiB out in the 6 s).
        assert in_flight < 96 * 1024 * 1024, f"{in_flight / 2**20:.0f} MiB written and not yet read back"
    growth = peak - rss_before
    assert growth < 32 * 1024 * 1024, f"the server grew by {growth / 2**20:.0f} MiB"


async def test_the_relay_on_asyncios_own_loop(django_db_blocker, local_cluster, tmp_path, instance, student):
    """EVENT_LOOP=asyncio, the fallback when uvloop is missing: same bytes, same close reasons."""
    log = tmp_path / "server-asyncio.log"
    with run_console_server(django_db_blocker, local_cluster, log, {"EVENT_LOOP": "asyncio"}) as server:
        cookie = await database_sync_to_async(session_cookie)(student)
        async with ws(server, console_path(instance.pk), cookie) as conn:
            assert (await conn.recv(decode=False)).startswith(BANNER_PREFIX)
            payload = os.urandom(1024 * 1024)
            sender = asyncio.create_task(
                conn.send([payload[i : i + 50_000] for i in range(0, len(payload), 50_000)])
            )
            assert await recv_exactly(conn, len(payload)) == payload
            await sender
        async with ws(server, console_path(instance.pk, machine="nope"), cookie) as conn:
            with pytest.raises(ConnectionClosed) as closed:
                await conn.recv()
        assert closed.value.rcvd.code == 4404


async def test_streams_leave_no_file_descriptor_behind(server, instance, student):
    """Thirty rounds of all three consoles of the instance opened and ended (a third of the browsers
    vanishing without a close frame): the server ends up with the file descriptors it had, so no upstream
    connection or socket is left open (the last round's would not even be replaced by a newer one)."""
    descriptors = Path(f"/proc/{server.pid}/fd")
    cookie = await database_sync_to_async(session_cookie)(student)
    streams = [("vm0", "serial"), ("vm0", "vnc"), ("text", "serial")]

    async def one(machine: str, kind: str, abort: bool) -> None:
        async with ws(server, console_path(instance.pk, machine=machine, kind=kind), cookie) as conn:
            if kind == "vnc":
                assert await recv_exactly(conn, 12) == b"RFB 003.008\n"
            else:
                assert (await conn.recv(decode=False)).startswith(BANNER_PREFIX)
                await conn.send(b"ping")
                assert await recv_exactly(conn, 4) == b"ping"
            if abort:
                conn.transport.abort()

    await one("vm0", "serial", False)  # warm: the server's own descriptors (database, ...) are open from here
    before = len(list(descriptors.iterdir()))
    for round_ in range(30):
        await asyncio.gather(*(one(m, k, (round_ + i) % 3 == 0) for i, (m, k) in enumerate(streams)))
    for _ in range(100):
        after = len(list(descriptors.iterdir()))
        if after <= before:
            break
        await asyncio.sleep(0.1)
    assert after <= before, f"{after - before} descriptors more than before"
