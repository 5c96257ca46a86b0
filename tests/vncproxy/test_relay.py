"""Bytes through the proxy: exact in both directions, drops on either side, no task left behind."""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.db import database_sync_to_async

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, read_exactly, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def open_console(instance, user, **kwargs):
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk, **kwargs), cookie=cookie)
    connected, _ = await comm.connect(5)
    assert connected
    return comm


async def read_banner(comm) -> bytes:
    banner = (await comm.receive_output(5))["bytes"]
    assert banner.startswith(BANNER_PREFIX) and banner.endswith(b"\r\n")
    return banner


async def test_four_mebibytes_echo_back_byte_exact(instance, student):
    comm = await open_console(instance, student)
    await read_banner(comm)
    payload = os.urandom(4 * 1024 * 1024)

    async def send_all() -> None:
        for offset in range(0, len(payload), 65536):
            await comm.send_to(bytes_data=payload[offset : offset + 65536])

    sender = asyncio.create_task(send_all())
    echoed = await read_exactly(comm, len(payload), timeout=20)
    await sender
    assert echoed == payload
    await comm.disconnect()


async def test_text_frames_are_dropped(instance, student):
    comm = await open_console(instance, student)
    await read_banner(comm)
    await comm.send_to(text_data="ignored")
    await comm.send_to(bytes_data=b"kept")
    assert await read_exactly(comm, 4) == b"kept"
    await comm.disconnect()


async def test_upstream_drop_closes_with_a_reconnectable_code(instance, student, app_cluster):
    app_cluster.faults.drop_websocket(kind="console", after_bytes=10)
    comm = await open_console(instance, student)
    close = await expect_close(comm)
    assert close["code"] == 4502
    assert "reconnect" in close["reason"]
    await comm.disconnect()
    # Reconnecting works (the fault was for one connection).
    comm = await open_console(instance, student)
    await read_banner(comm)
    await comm.disconnect()


async def test_vnc_speaks_rfb_through_the_proxy(instance, student):
    comm = await open_console(instance, student, kind="vnc")
    assert await read_exactly(comm, 12) == b"RFB 003.008\n"
    await comm.send_to(bytes_data=b"RFB 003.008\n")
    assert await read_exactly(comm, 2) == b"\x01\x01"  # one security type: None
    await comm.disconnect()


async def test_browser_drop_leaves_no_task_behind(instance, student):
    before = asyncio.all_tasks()
    comm = await open_console(instance, student)
    await read_banner(comm)
    await comm.send_to(bytes_data=b"x" * 100_000)
    during = asyncio.all_tasks() - before
    assert len(during) >= 3  # the consumer, its upstream pump and its watchdog (plus websockets')
    await comm.disconnect()  # the browser goes away mid-stream
    for _ in range(100):
        leaked = {t for t in asyncio.all_tasks() - before if not t.done()}
        if not leaked:
            break
        await asyncio.sleep(0.02)
    assert not leaked, leaked
