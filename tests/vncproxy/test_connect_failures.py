"""Whatever fails while a console connects, the stream gives back its place in the limits, and
leaves no connection to the machine behind and no stuck browser (it is closed with 4503).

Each step of the consumer's connect fails in turn: authorising (the database), counting across
processes (Redis), kicking the older stream (the channel layer's group_send), opening the upstream,
joining the stream's group (group_add), starting the relay, recording activity, and the consumer
being cancelled midway (a shutdown). The channel layer fails through the CHANNEL_LAYERS setting (a
layer whose group call raises what channels-redis raises, or channels-redis pointed at a port where
nothing listens, which also fails Channels' own receive loop); the database and upstream through
this app's own functions.
Whether an upstream was left open is asked of the local cluster: a VNC connection with
preserveSession=true is refused while another one to the same VMI is open.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
import websockets
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.exceptions import InvalidStatus

from tests.conftest import require_service
from vncproxy import consumers
from vncproxy.limits import stream_limits

from .conftest import communicator, console_path, expect_close, read_exactly, session_cookie
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/14"  # this file's; emptied before and after
REFUSED = "Error 111 connecting to 127.0.0.1:6379. Connection refused."
UNAVAILABLE = (4503, "The console service is unavailable; try again shortly.")


class GroupSendFails(InMemoryChannelLayer):
    """A channel layer whose Redis goes away before the kick is sent."""

    async def group_send(self, group: str, message: dict) -> None:
        raise RedisConnectionError(REFUSED)


class GroupAddFails(InMemoryChannelLayer):
    """A channel layer whose Redis goes away after the kick, before the stream joins its group."""

    async def group_add(self, group: str, channel: str) -> None:
        raise RedisConnectionError(REFUSED)


def layer(backend: type) -> dict:
    return {"default": {"BACKEND": f"{__name__}.{backend.__name__}"}}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_url(settings):
    require_service(lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping(), "Redis", "redis-server")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    settings.REDIS_URL = REDIS_URL
    yield REDIS_URL
    client.flushdb()
    client.close()


async def connect_vnc(instance, user) -> tuple:
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk, kind="vnc"), cookie=cookie)
    connected, _ = await comm.connect(5)
    assert connected
    return comm


async def refused(instance, user) -> tuple[int, str]:
    comm = await connect_vnc(instance, user)
    close = await expect_close(comm)
    await comm.disconnect()
    return close["code"], close.get("reason", "")


async def vnc_session_open(app_cluster, instance) -> bool:
    """Whether the cluster holds a VNC stream of vm0 open (it refuses to preserve a second one)."""
    base = app_cluster.url.replace("https://", "wss://")
    vmi = f"namespaces/{instance.namespace}/virtualmachineinstances/vm0"
    try:
        async with websockets.connect(
            f"{base}/apis/subresources.kubevirt.io/v1/{vmi}/vnc?preserveSession=true",
            ssl=app_cluster.ssl_context(),
            subprotocols=["plain.kubevirt.io"],
            additional_headers={"Authorization": f"Bearer {app_cluster.token('admin')}"},
        ):
            return False
    except InvalidStatus as error:
        assert error.response.status_code == 500, error.response
        return True


async def assert_nothing_held(app_cluster, instance) -> None:
    assert stream_limits.total == 0 and not stream_limits.per_user
    for _ in range(50):  # the cluster sees the aborted connection within a loop turn or two
        if not await vnc_session_open(app_cluster, instance):
            return
        await asyncio.sleep(0.05)
    pytest.fail("the console's upstream connection was left open")


async def test_the_probe_sees_an_open_upstream(app_cluster, instance, student):
    """The check the tests below rely on: while a VNC stream is open, the cluster says so."""
    comm = await connect_vnc(instance, student)
    assert await read_exactly(comm, 12) == b"RFB 003.008\n"
    assert stream_limits.total == 1
    assert await vnc_session_open(app_cluster, instance)
    await comm.disconnect()
    await assert_nothing_held(app_cluster, instance)


async def test_the_database_failing_while_authorising(app_cluster, instance, student, monkeypatch):
    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(consumers, "authorise_stream", locked)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


async def test_the_channel_layer_failing_to_kick(app_cluster, instance, student, settings):
    settings.CHANNEL_LAYERS = layer(GroupSendFails)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


async def test_opening_the_upstream_failing_unexpectedly(app_cluster, instance, student, monkeypatch):
    async def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(consumers, "open_upstream", broken)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


async def test_the_channel_layer_failing_to_add_the_stream_to_its_group(
    app_cluster, instance, student, settings
):
    """The upstream is open by then: it must be closed, not left to the machine."""
    settings.CHANNEL_LAYERS = layer(GroupAddFails)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


async def test_redis_down_for_limits_and_channel_layer(app_cluster, instance, student, settings):
    """channels-redis and the shared limits both on a port where nothing listens."""
    down = f"redis://127.0.0.1:{closed_port()}/0"
    settings.REDIS_URL = down
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [down]}}
    }
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


async def test_a_lease_taken_in_redis_is_given_back(app_cluster, instance, student, settings, redis_url):
    settings.CHANNEL_LAYERS = layer(GroupAddFails)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.keys("laborchestrator:console-streams:*") in ([], [b""])  # no lease left
        assert not await client.zcard(f"laborchestrator:console-streams:{student.pk}")
    finally:
        await client.aclose()


async def test_redis_going_away_under_an_open_console(app_cluster, instance, student, settings, redis_url):
    """channels-redis's receive loop fails when its Redis connection is cut; Channels then calls no
    `disconnect`. The stream still ends with 4503 and gives everything back."""
    redis_proxy = TcpProxy(("127.0.0.1", 6379))
    await redis_proxy.start()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{redis_proxy.port}/14"]},
        }
    }
    comm = await connect_vnc(instance, student)
    assert await read_exactly(comm, 12) == b"RFB 003.008\n"
    assert stream_limits.total == 1
    await redis_proxy.cut()
    close = await expect_close(comm, timeout=10)
    assert (close["code"], close["reason"]) == UNAVAILABLE
    await comm.disconnect()
    await assert_nothing_held(app_cluster, instance)


async def test_recording_activity_failing_leaves_the_stream_open(app_cluster, instance, student, monkeypatch):
    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(consumers, "instance_touch", locked)
    comm = await connect_vnc(instance, student)
    assert await read_exactly(comm, 12) == b"RFB 003.008\n"
    await comm.disconnect()
    await assert_nothing_held(app_cluster, instance)


async def test_the_relay_failing_to_start(app_cluster, instance, student, monkeypatch):
    """The last step of connect: the upstream is open and the stream is in its group."""

    class BrokenRelay(consumers.Relay):
        def start(self) -> None:
            raise RuntimeError("a bug")

    monkeypatch.setattr(consumers, "Relay", BrokenRelay)
    assert await refused(instance, student) == UNAVAILABLE
    await assert_nothing_held(app_cluster, instance)


class GroupAddHangs(InMemoryChannelLayer):
    """A channel layer whose Redis stops answering after the kick (the upstream is open by then)."""

    async def group_add(self, group: str, channel: str) -> None:
        await asyncio.Event().wait()


async def test_connect_cancelled_midway(app_cluster, instance, student, settings):
    """The server cancels the consumer (shutdown, or the browser gone and the server giving up) while
    connect waits on the channel layer: the upstream, the limit and the group are given back."""
    settings.CHANNEL_LAYERS = layer(GroupAddHangs)
    comm = await connect_vnc(instance, student)
    await asyncio.sleep(0.3)  # connect is waiting in group_add, with the upstream open
    assert stream_limits.total == 1
    assert await vnc_session_open(app_cluster, instance)
    await comm.disconnect(timeout=0.5)  # the communicator cancels the application on time-out
    await assert_nothing_held(app_cluster, instance)
