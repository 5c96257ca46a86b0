"""What virt-api answers or does to a console stream, turned into the close codes of the README.

The local cluster reproduces each (tests/localcluster/test_websockets.py names the upstream files):
the console of a Failed VMI is a 409, an error of the API server a 500, and a newer connection to
the same console (from a client other than this app, e.g. virtctl) ends the older one without a
close frame. Students get plain words; staff get the cluster's exact reason after them.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from channels.db import database_sync_to_async

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

FAILED = "The machine has failed; stop the lab and start it again."
UNAVAILABLE = "The cluster is unavailable; try again shortly."
LOST = "The connection to the machine was lost; reconnect."


async def close_of(user, instance, **path) -> dict:
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk, **path), cookie=cookie)
    connected, _ = await comm.connect(5)
    assert connected
    close = await expect_close(comm)
    await comm.disconnect()
    return close


async def test_the_console_of_a_failed_machine_is_4409(app_cluster, instance, student, instructor):
    app_cluster.faults.fail_vmi(instance.namespace, "vm0", "the guest crashed")
    close = await close_of(student, instance)
    assert (close["code"], close["reason"]) == (4409, FAILED)
    close = await close_of(instructor, instance)
    assert close["code"] == 4409
    # The Status message, cut to what a close frame carries.
    assert close["reason"].startswith(f"{FAILED} (Operation cannot be fulfilled on virtualmachineinstance")
    assert close["reason"].endswith("...") and len(close["reason"].encode()) == 123


async def test_an_internal_error_of_the_api_server_is_4503(app_cluster, instance, student, instructor):
    app_cluster.faults.fail("get", "virtualmachineinstances/console", status=500, times=2)
    close = await close_of(student, instance)
    assert (close["code"], close["reason"]) == (4503, UNAVAILABLE)
    close = await close_of(instructor, instance)
    assert close["code"] == 4503
    assert close["reason"].startswith(f"{UNAVAILABLE} (localcluster injected fault: get ")


@pytest.mark.parametrize("staff", [False, True], ids=["student", "staff"])
async def test_another_client_taking_the_console_ends_the_stream_with_4502(
    app_cluster, instance, student, instructor, staff
):
    """virt-api closes the older stream without a close frame (1006) when any client opens the same
    console; with no kick from this app to explain it, the browser is told to reconnect."""
    user = instructor if staff else student
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk), cookie=cookie)
    assert (await comm.connect(5))[0]
    assert (await comm.receive_output(5))["bytes"].startswith(BANNER_PREFIX)
    base = app_cluster.url.replace("https://", "wss://")
    vmi = f"namespaces/{instance.namespace}/virtualmachineinstances/vm0"
    url = f"{base}/apis/subresources.kubevirt.io/v1/{vmi}/console"
    async with websockets.connect(
        url,
        ssl=app_cluster.ssl_context(),
        subprotocols=["plain.kubevirt.io"],
        additional_headers={"Authorization": f"Bearer {app_cluster.token('admin')}"},
    ) as virtctl:
        await asyncio.wait_for(virtctl.recv(), 5)
        close = await expect_close(comm)
    assert close["code"] == 4502
    if staff:
        assert close["reason"] == f"{LOST} (the API server closed the connection without a close frame)"
    else:
        assert close["reason"] == LOST
    await comm.disconnect()
