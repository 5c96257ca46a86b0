"""A second connection to the same stream replaces the first, as KubeVirt does."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_second_tab_replaces_the_first_with_a_clear_reason(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    first = communicator(console_path(instance.pk), cookie=cookie)
    assert (await first.connect(5))[0]
    assert (await first.receive_output(5))["bytes"].startswith(BANNER_PREFIX)

    second = communicator(console_path(instance.pk), cookie=cookie)
    assert (await second.connect(5))[0]
    close = await expect_close(first)
    assert (close["code"], close["reason"]) == (4001, "Replaced by a newer connection to this console.")
    # The newer one streams.
    assert (await second.receive_output(5))["bytes"].startswith(BANNER_PREFIX)
    await second.send_to(bytes_data=b"still here")
    data = b""
    while len(data) < 10:
        data += (await second.receive_output(5))["bytes"]
    assert data == b"still here"
    await first.disconnect()
    await second.disconnect()


async def test_vnc_and_serial_of_one_machine_coexist(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    serial = communicator(console_path(instance.pk, kind="serial"), cookie=cookie)
    vnc = communicator(console_path(instance.pk, kind="vnc"), cookie=cookie)
    assert (await serial.connect(5))[0]
    assert (await vnc.connect(5))[0]
    assert (await serial.receive_output(5))["bytes"].startswith(BANNER_PREFIX)
    assert (await vnc.receive_output(5))["bytes"].startswith(b"RFB")
    assert await serial.receive_nothing(0.3)
    await serial.disconnect()
    await vnc.disconnect()
