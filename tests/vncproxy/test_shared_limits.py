"""Per-user console limits across app processes, counted in a real Redis (REDIS_URL set).

Needs a Redis server on 127.0.0.1:6379 (Debian: redis-server); the tests use its database 15 and
empty it before and after.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import redis
from channels.db import database_sync_to_async
from websockets.exceptions import ConnectionClosed

from tests.conftest import require_service
from vncproxy.limits import LimitReached, SharedUserStreams

from .app_server import run_console_server, use_file_sqlite_test_database
from .conftest import BANNER_PREFIX, console_path, session_cookie
from .test_server import ws

use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"vncproxy-test-{os.getpid()}.sqlite3")

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_url():
    require_service(lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping(), "Redis", "redis-server")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


async def test_distinct_streams_count_and_the_same_stream_again_does_not(redis_url):
    streams = SharedUserStreams(redis_url)
    first = await streams.acquire(user_id=1, key=(7, "vm0", "serial"), limit=2)
    await streams.acquire(user_id=1, key=(7, "vm0", "vnc"), limit=2)
    with pytest.raises(LimitReached) as refused:
        await streams.acquire(user_id=1, key=(7, "text", "serial"), limit=2)
    assert refused.value.message == "You may have 2 consoles open at a time; close one first."
    await streams.acquire(user_id=1, key=(7, "vm0", "serial"), limit=2)  # a second tab replaces the first
    await streams.acquire(user_id=2, key=(7, "text", "serial"), limit=2)  # another user's own count
    await streams.release(user_id=1, lease=first)
    with pytest.raises(LimitReached):  # the second tab still holds vm0's serial console
        await streams.acquire(user_id=1, key=(7, "text", "serial"), limit=2)


async def test_two_processes_share_the_count(redis_url):
    one, other = SharedUserStreams(redis_url), SharedUserStreams(redis_url)
    lease = await one.acquire(user_id=1, key=(7, "vm0", "serial"), limit=1)
    with pytest.raises(LimitReached):
        await other.acquire(user_id=1, key=(7, "text", "serial"), limit=1)
    await one.release(user_id=1, lease=lease)
    await other.acquire(user_id=1, key=(7, "text", "serial"), limit=1)


async def test_leases_of_a_process_that_died_expire_and_refreshed_ones_do_not(redis_url):
    streams = SharedUserStreams(redis_url, lease_seconds=1)
    kept = await streams.acquire(user_id=1, key=(7, "vm0", "serial"), limit=2)
    await streams.acquire(user_id=1, key=(7, "vm0", "vnc"), limit=2)  # never refreshed: "crashed"
    for _ in range(3):
        await asyncio.sleep(0.5)
        await streams.refresh(user_id=1, lease=kept)
    await streams.acquire(user_id=1, key=(7, "text", "serial"), limit=2)  # the dead lease is gone
    with pytest.raises(LimitReached):  # the refreshed one is not
        await streams.acquire(user_id=1, key=(8, "vm0", "serial"), limit=2)


@pytest.mark.django_db(transaction=True)
async def test_two_server_processes_share_limits_and_kick_each_other(
    redis_url, django_db_blocker, local_cluster, tmp_path, instance, student
):
    env = {"REDIS_URL": redis_url, "CONSOLE_MAX_STREAMS_PER_USER": "1"}
    with (
        run_console_server(django_db_blocker, local_cluster, tmp_path / "a.log", env) as first_server,
        run_console_server(django_db_blocker, local_cluster, tmp_path / "b.log", env) as second_server,
    ):
        cookie = await database_sync_to_async(session_cookie)(student)
        async with ws(first_server, console_path(instance.pk), cookie) as first:
            assert (await first.recv(decode=False)).startswith(BANNER_PREFIX)
            # Another console on the other process: over the user's limit of one, counted in Redis.
            async with ws(second_server, console_path(instance.pk, machine="text"), cookie) as refused:
                with pytest.raises(ConnectionClosed) as closed:
                    await refused.recv()
            assert closed.value.rcvd.code == 4429
            # The same console on the other process replaces the first, through the Redis channel layer.
            async with ws(second_server, console_path(instance.pk), cookie) as second:
                assert (await second.recv(decode=False)).startswith(BANNER_PREFIX)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(first.recv(), 5)
                assert closed.value.rcvd.code == 4001
        # Both closed: their places are free again, on either process.
        for _ in range(50):
            async with ws(first_server, console_path(instance.pk, machine="text"), cookie) as text:
                try:
                    if (await text.recv(decode=False)).startswith(BANNER_PREFIX):
                        break
                except ConnectionClosed:
                    await asyncio.sleep(0.1)  # the last release may still be on its way
        else:
            pytest.fail("the places were not released")
