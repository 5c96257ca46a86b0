"""Fixtures for the console proxy: running lab instances on the local cluster, sessions, a client.

Instances are started the way the application starts them (labs.lifecycle.instance_start against
the local cluster, whose `none` runtime serves `console` as an echo after a banner line and `vnc`
as a minimal RFB server). Tests use `transaction=True`: the proxy reads the database from worker
threads (and, for the server tests, from another process), so rows must be committed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from labs import cluster, lifecycle
from labs.models import Lab, LabInstance, LabMachine, VMImage
from vncproxy import consumers
from vncproxy.limits import stream_limits

ORIGIN = (b"origin", b"http://localhost")
BANNER_PREFIX = b"localcluster none-runtime console "


@pytest.fixture
def app_cluster(local_cluster, settings) -> Iterator:
    """The application pointed at the local cluster, like production at a real one."""
    settings.KUBECONFIG = str(local_cluster.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    settings.KUBE_REQUEST_TIMEOUT = 5.0
    cluster.reset_client()
    yield local_cluster
    cluster.reset_client()


@pytest.fixture(autouse=True)
def _fresh_proxy_state() -> Iterator[None]:
    """Per-process counters and throttles must not leak from one test into the next."""
    consumers._last_touch.clear()
    yield
    consumers._last_touch.clear()
    stream_limits.total = 0
    stream_limits.per_user.clear()


@pytest.fixture
def lab(transactional_db) -> Lab:
    image = VMImage.objects.create(
        name=f"Cirros {uuid.uuid4().hex[:6]}",
        container_disk_image="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="cirros",
        min_memory_mib=128,
    )
    text_only = VMImage.objects.create(
        name=f"Text {uuid.uuid4().hex[:6]}",
        container_disk_image="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="cirros",
        has_vnc=False,
    )
    tag = uuid.uuid4().hex[:8]
    lab = Lab.objects.create(name=f"Lab {tag}", slug=f"lab-{tag}", namespace_prefix=f"c{tag}", published=True)
    LabMachine.objects.create(lab=lab, name="vm0", image=image, cores=1, memory_mib=256, order=0)
    LabMachine.objects.create(lab=lab, name="text", image=text_only, cores=1, memory_mib=256, order=1)
    return lab


def wait_running(instance: LabInstance, timeout: float = 10.0) -> LabInstance:
    deadline = time.monotonic() + timeout
    while lifecycle.instance_refresh(instance=instance).status != LabInstance.Status.RUNNING:
        assert instance.status != LabInstance.Status.FAILED, instance.last_error
        if time.monotonic() > deadline:
            pytest.fail(f"instance {instance.pk} not running after {timeout}s")
        time.sleep(0.02)
    return instance


@pytest.fixture
def start_instance(app_cluster, lab) -> Iterator[Callable[..., LabInstance]]:
    started: list[LabInstance] = []

    def start(user) -> LabInstance:
        instance = wait_running(lifecycle.instance_start(user=user, lab=lab))
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.refresh_from_db()
        lifecycle.instance_stop(instance=instance)


@pytest.fixture
def instance(start_instance, student) -> LabInstance:
    """A running instance of `student`'s, with machines `vm0` (VNC and serial) and `text` (serial)."""
    return start_instance(student)


def session_cookie(user) -> bytes:
    """The Cookie header of a signed-in browser session of `user` (stored in the database)."""
    client = Client()
    client.force_login(user)
    cookie = SimpleCookie()
    cookie[django_settings.SESSION_COOKIE_NAME] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return cookie.output(header="", sep=";").strip().encode()


def console_path(
    instance_id: int, machine: str = "vm0", kind: str = "serial", ticket: str | None = None
) -> str:
    path = f"/ws/instances/{instance_id}/machines/{machine}/{kind}"
    return f"{path}?ticket={ticket}" if ticket else path


def communicator(
    path: str,
    *,
    cookie: bytes | None = None,
    origin: bytes | None = ORIGIN[1],
    subprotocols=None,
    host: bytes = b"localhost",
    extra_headers: list[tuple[bytes, bytes]] = (),
) -> WebsocketCommunicator:
    """A websocket client on the whole ASGI stack (origin check, sessions, routing)."""
    from laborchestrator.asgi import application

    headers = [(b"host", host), *extra_headers]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)


async def expect_close(comm: WebsocketCommunicator, timeout: float = 5.0) -> dict:
    """Skip binary frames until the server closes; return the close message."""
    while True:
        message = await comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            return message
        assert message["type"] in ("websocket.send", "websocket.accept"), message


async def read_exactly(comm: WebsocketCommunicator, size: int, timeout: float = 10.0) -> bytes:
    data = bytearray()
    while len(data) < size:
        message = await comm.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        data += message["bytes"]
    return bytes(data)
