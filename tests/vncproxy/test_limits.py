"""Concurrent stream limits, per user and per process."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(path: str, cookie: bytes):
    comm = communicator(path, cookie=cookie)
    assert (await comm.connect(5))[0]
    return comm, await comm.receive_output(5)


async def test_per_user_limit(instance, student, instructor, settings):
    settings.CONSOLE_MAX_STREAMS_PER_USER = 2
    cookie = await database_sync_to_async(session_cookie)(student)
    serial, first = await _open(console_path(instance.pk, kind="serial"), cookie)
    vnc, second = await _open(console_path(instance.pk, kind="vnc"), cookie)
    assert first["bytes"].startswith(BANNER_PREFIX) and second["bytes"].startswith(b"RFB")
    third, refused = await _open(console_path(instance.pk, machine="text"), cookie)
    assert refused["type"] == "websocket.close"
    assert (refused["code"], refused["reason"]) == (
        4429,
        "You may have 2 consoles open at a time; close one first.",
    )
    await third.disconnect()
    # Reopening a stream already open (a second tab) replaces it, so it is not refused.
    again, streamed = await _open(console_path(instance.pk, kind="serial"), cookie)
    assert streamed["bytes"].startswith(BANNER_PREFIX)
    assert (await expect_close(serial))["code"] == 4001
    await serial.disconnect()
    # Another user has their own count.
    staff_cookie = await database_sync_to_async(session_cookie)(instructor)
    staff, streamed = await _open(console_path(instance.pk, machine="text"), staff_cookie)
    assert streamed["bytes"].startswith(BANNER_PREFIX)
    # Closing one frees a place.
    await vnc.disconnect()
    text, streamed = await _open(console_path(instance.pk, machine="text"), cookie)
    assert streamed["type"] == "websocket.send"
    for comm in (again, staff, text):
        await comm.disconnect()


async def test_per_process_limit(instance, student, instructor, settings):
    settings.CONSOLE_MAX_STREAMS_PROCESS = 1
    cookie = await database_sync_to_async(session_cookie)(student)
    first, streamed = await _open(console_path(instance.pk), cookie)
    assert streamed["type"] == "websocket.send"
    staff_cookie = await database_sync_to_async(session_cookie)(instructor)
    second, refused = await _open(console_path(instance.pk, machine="text"), staff_cookie)
    assert refused["type"] == "websocket.close" and refused["code"] == 4429
    assert "too many open consoles" in refused["reason"]
    await second.disconnect()
    await first.disconnect()
