"""Idle streams close; activity is recorded on the instance, throttled."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from labs.models import LabInstance

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_idle_stream_is_closed(instance, student, settings):
    settings.CONSOLE_IDLE_TIMEOUT_SECONDS = 0.5
    cookie = await database_sync_to_async(session_cookie)(student)
    comm = communicator(console_path(instance.pk), cookie=cookie)
    assert (await comm.connect(5))[0]
    assert (await comm.receive_output(5))["bytes"].startswith(BANNER_PREFIX)
    # Traffic keeps it open...
    for _ in range(4):
        await asyncio.sleep(0.25)
        await comm.send_to(bytes_data=b".")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # ... silence closes it.
    close = await expect_close(comm, timeout=5)
    assert close["code"] == 4408
    assert 0.3 < loop.time() - started < 2.0
    await comm.disconnect()


def _last_activity(instance_id: int):
    return LabInstance.objects.get(pk=instance_id).last_activity_at


async def test_opening_a_console_records_activity_once_a_minute(instance, student):
    long_ago = timezone.now() - timedelta(hours=1)
    await database_sync_to_async(LabInstance.objects.filter(pk=instance.pk).update)(last_activity_at=long_ago)
    cookie = await database_sync_to_async(session_cookie)(student)
    comm = communicator(console_path(instance.pk), cookie=cookie)
    assert (await comm.connect(5))[0]
    await comm.receive_output(5)
    first = await database_sync_to_async(_last_activity)(instance.pk)
    assert first > long_ago + timedelta(minutes=59)
    await comm.disconnect()
    # A second stream within the minute writes nothing.
    comm = communicator(console_path(instance.pk, kind="vnc"), cookie=cookie)
    assert (await comm.connect(5))[0]
    await comm.receive_output(5)
    assert await database_sync_to_async(_last_activity)(instance.pk) == first
    await comm.disconnect()
