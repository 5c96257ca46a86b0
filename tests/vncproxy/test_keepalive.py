"""Idle consoles survive a proxy that drops silent connections (kubevirt/kubevirt#6493).

virt-api sends no keepalive on console and VNC streams (pkg/virt-api/rest/streamer.go: the raw
streamer copies bytes and pings nobody), and load balancers and proxies between the app and the API
server cut connections on which nothing passed for a while. The relay pings the machine's side every
CONSOLE_UPSTREAM_PING_SECONDS; here a TCP proxy in front of the local cluster drops any connection
silent both ways for a second, as such a load balancer does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from channels.db import database_sync_to_async

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, read_exactly, session_cookie
from .tcp_proxy import TcpProxy
from .test_upstream_tls import kubeconfig_with, point_at  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_DROP_SECONDS = 1.0


@pytest.fixture
async def idle_dropping_cluster(
    app_cluster,
    instance,
    tmp_path,
    point_at,  # noqa: F811
) -> AsyncIterator[TcpProxy]:
    """The app pointed at the local cluster through the idle-dropping proxy (same CA, same address),
    once `instance` runs (its start and stop are synchronous calls, made while no loop serves it)."""
    url = urlsplit(app_cluster.url)
    proxy = TcpProxy((url.hostname, url.port), idle=IDLE_DROP_SECONDS)
    await proxy.start()
    point_at(kubeconfig_with(app_cluster, tmp_path, server=f"https://127.0.0.1:{proxy.port}"))
    yield proxy
    await proxy.cut()


async def open_console(instance, user):
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk), cookie=cookie)
    assert (await comm.connect(5))[0]
    assert (await comm.receive_output(5))["bytes"].startswith(BANNER_PREFIX)
    return comm


async def test_pings_keep_an_idle_console_through_the_proxy(
    idle_dropping_cluster, instance, student, settings
):
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0.3
    comm = await open_console(instance, student)
    await asyncio.sleep(3 * IDLE_DROP_SECONDS)  # nobody types, the machine says nothing
    await comm.send_to(bytes_data=b"still there?")
    assert await read_exactly(comm, 12) == b"still there?"
    assert idle_dropping_cluster.drops == 0
    await comm.disconnect()


async def test_without_pings_the_proxy_drops_the_idle_console(
    idle_dropping_cluster, instance, student, settings
):
    """The control: the same silence without pings loses the stream (the page reconnects on 4502)."""
    settings.CONSOLE_UPSTREAM_PING_SECONDS = 0
    comm = await open_console(instance, student)
    close = await expect_close(comm, timeout=5 * IDLE_DROP_SECONDS)
    assert close["code"] == 4502
    assert idle_dropping_cluster.drops == 1
    await comm.disconnect()
