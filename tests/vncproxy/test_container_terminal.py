"""A container machine's terminal through the proxy: pods/exec with a TTY on a real runc container,
the same authorisation and close codes as a console; resize reaches the TTY; a reconnect opens a
fresh shell; a flood of output stays bounded in the relay; a container that does not run is 4409."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from channels.db import database_sync_to_async

from labs import cluster, lifecycle
from labs.models import Lab, LabMachine
from localcluster.containers import toolsimage
from localcluster.harness import start_local_cluster
from tests.localcluster_containers.container_helpers import TOOLS, missing

from .conftest import communicator, console_path, expect_close, session_cookie, wait_running

pytestmark = pytest.mark.django_db(transaction=True)
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


@pytest.fixture(scope="module")
def container_server(tmp_path_factory):
    if reason := missing():
        pytest.skip(reason)
    images = tmp_path_factory.mktemp("terminal-images")
    toolsimage.build(images, tag="1")
    with start_local_cluster(
        tmp_path_factory.mktemp("terminal-cluster"),
        extra_args=["--container-images", str(images), "--phase-delay-ms", "5", "--finalize-delay-ms", "10"],
    ) as server:
        yield server


@pytest.fixture
def container_instance(container_server, settings, transactional_db, student):
    settings.KUBECONFIG = str(container_server.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    settings.KUBE_REQUEST_TIMEOUT = 15.0  # the shared test machine is often loaded
    cluster.reset_client()
    tag = uuid.uuid4().hex[:8]
    lab = Lab.objects.create(name=f"L {tag}", slug=f"l-{tag}", namespace_prefix=f"k{tag}", published=True)
    LabMachine.objects.create(
        lab=lab, name="tools", kind="container", container_image=TOOLS, command=LOOP, cores=1, memory_mib=64
    )
    instance = wait_running(lifecycle.instance_start(user=student, lab=lab), timeout=20)
    yield instance
    instance.refresh_from_db()
    lifecycle.instance_stop(instance=instance)
    cluster.reset_client()


async def open_terminal(instance, user):
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(console_path(instance.pk, machine="tools", kind="terminal"), cookie=cookie)
    connected, _ = await comm.connect(5)
    assert connected
    return comm


async def read_until(comm, needle: bytes, timeout: float = 10.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout
    while needle not in data:
        message = await comm.receive_output(max(0.1, deadline - time.monotonic()))
        assert message["type"] == "websocket.send", message
        data += message.get("bytes") or b""
    return bytes(data)


async def test_typing_runs_commands_and_resize_reaches_the_tty(container_instance, student):
    comm = await open_terminal(container_instance, student)
    await comm.send_to(text_data=json.dumps({"columns": 120, "rows": 40}))
    await comm.send_to(bytes_data=b"echo $((6*7)); stty size\r")
    out = await read_until(comm, b"40 120")
    assert b"42" in out
    await comm.disconnect()


async def test_a_reconnect_opens_a_fresh_shell(container_instance, student):
    comm = await open_terminal(container_instance, student)
    await comm.send_to(bytes_data=b"X=kept; echo pid=$$\r")
    first = await read_until(comm, b"pid=")
    await comm.disconnect()
    comm = await open_terminal(container_instance, student)
    await comm.send_to(bytes_data=b"echo x=${X:-fresh}\r")
    assert b"x=fresh" in await read_until(comm, b"x=fresh")
    await comm.disconnect()
    assert first


async def test_exiting_the_shell_closes_with_the_reconnect_code(container_instance, student):
    comm = await open_terminal(container_instance, student)
    await comm.send_to(bytes_data=b"exit 3\r")
    close = await expect_close(comm, timeout=10)
    assert close["code"] == 4502


async def test_another_student_is_refused(container_instance, django_user_model):
    other = await database_sync_to_async(django_user_model.objects.create_user)("other", password="x")
    cookie = await database_sync_to_async(session_cookie)(other)
    comm = communicator(console_path(container_instance.pk, machine="tools", kind="terminal"), cookie=cookie)
    await comm.connect(5)
    assert (await expect_close(comm))["code"] == 4403


async def test_a_flood_of_output_keeps_the_relay_bounded(container_instance, student):
    comm = await open_terminal(container_instance, student)
    await comm.send_to(bytes_data=b"yes flood-flood-flood-flood | head -c 30000000; echo END-$((1+1))\r")
    # Read slowly for a while: the relay pauses the upstream instead of buffering.
    await asyncio.sleep(1.0)
    received = 0
    deadline = time.monotonic() + 60
    tail = b""
    while b"END-2" not in tail and time.monotonic() < deadline:
        message = await comm.receive_output(10)
        chunk = message.get("bytes") or b""
        received += len(chunk)
        tail = (tail + chunk)[-64:]
    assert b"END-2" in tail and received >= 30_000_000
    await comm.disconnect()


async def test_a_container_that_does_not_run_is_4409(container_server, settings, transactional_db, student):
    settings.KUBECONFIG = str(container_server.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    cluster.reset_client()
    tag = uuid.uuid4().hex[:8]

    def start():
        lab = Lab.objects.create(name=f"L {tag}", slug=f"l-{tag}", namespace_prefix=f"q{tag}", published=True)
        LabMachine.objects.create(
            lab=lab,
            name="tools",
            kind="container",
            container_image=TOOLS,
            command=["sh", "-c", "exit 3"],
            cores=1,
            memory_mib=64,
        )
        instance = lifecycle.instance_start(user=student, lab=lab)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            machine = lifecycle.instance_refresh(instance=instance).machines[0]
            if machine.problem is not None and machine.problem.cluster_reason == "CrashLoopBackOff":
                return instance
            time.sleep(0.05)
        pytest.fail("the container never went into CrashLoopBackOff")

    instance = await database_sync_to_async(start)()
    try:
        comm = communicator(
            console_path(instance.pk, machine="tools", kind="terminal"),
            cookie=await database_sync_to_async(session_cookie)(student),
        )
        await comm.connect(5)
        close = await expect_close(comm)
        assert close["code"] == 4409, close
        assert "not running" in close["reason"]
    finally:
        await database_sync_to_async(lifecycle.instance_stop)(instance=instance)
        cluster.reset_client()


async def test_the_labs_instructor_watches_a_container_terminal_read_only(
    container_instance, student, instructor
):
    def own_lab():
        lab = container_instance.lab
        lab.owner = instructor
        lab.save(update_fields=["owner"])

    await database_sync_to_async(own_lab)()
    comm = await open_terminal(container_instance, student)
    await comm.send_to(bytes_data=b"echo seen-$((6*7))\r")
    await read_until(comm, b"seen-42")
    cookie = await database_sync_to_async(session_cookie)(instructor)
    path = console_path(container_instance.pk, machine="tools", kind="terminal") + "/watch"
    observer = communicator(path, cookie=cookie)
    connected, _ = await observer.connect(5)
    assert connected
    assert b"seen-42" in await read_until(observer, b"seen-42")  # the recent output first
    await observer.send_to(bytes_data=b"echo from-observer\r")
    await comm.send_to(bytes_data=b"echo again-$((7*6))\r")
    assert b"from-observer" not in await read_until(comm, b"again-42")
    await observer.disconnect()
    await comm.disconnect()
