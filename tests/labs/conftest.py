"""Fixtures for the orchestration tests: labs to start, and the app pointed at the local cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from kubernetes import client

from labs import cluster, lifecycle
from labs.models import Lab, LabInstance, LabMachine, VMImage
from labs.watcher import ClusterWatcher


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Poll until the predicate is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


@pytest.fixture
def app_cluster(local_cluster, settings):
    """The application configured like production, but against the local cluster."""
    settings.KUBECONFIG = str(local_cluster.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    settings.KUBE_REQUEST_TIMEOUT = 5.0
    settings.LABS_ROLLBACK_WAIT_SECONDS = 10.0
    cluster.reset_client()
    local_cluster.faults.clear()
    yield local_cluster
    local_cluster.faults.clear()
    cluster.reset_client()


@pytest.fixture
def cluster_watcher(app_cluster, db):
    """The status watcher (labs.watcher), its watches running in this process against the local
    cluster. It writes status only when the test calls `apply_pending()` (in the test's own thread,
    so in the test's database transaction): `watched(cluster_watcher, ...)` polls that way."""
    watcher = ClusterWatcher()
    watcher.start()
    wait_for(lambda: watcher.synced, timeout=10)
    yield watcher
    watcher.stop()


def watched(watcher: ClusterWatcher, predicate: Callable[[], object], timeout: float = 10.0) -> object:
    """Like `wait_for`, letting the watcher record what it saw before each try."""

    def check() -> object:
        watcher.apply_pending()
        return predicate()

    return wait_for(check, timeout)


@pytest.fixture
def admin_core(local_cluster) -> client.CoreV1Api:
    """Sees everything, to check what the app left behind (or to act behind its back)."""
    return client.CoreV1Api(local_cluster.api_client("admin"))


@pytest.fixture
def admin_vmis(local_cluster) -> Callable[[str], list[dict]]:
    api = client.CustomObjectsApi(local_cluster.api_client("admin"))

    def vmis(namespace: str) -> list[dict]:
        return api.list_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachineinstances")[
            "items"
        ]

    return vmis


def namespace_exists(admin_core: client.CoreV1Api, name: str) -> bool:
    return any(ns.metadata.name == name for ns in admin_core.list_namespace().items)


@pytest.fixture
def image(db) -> VMImage:
    return VMImage.objects.create(
        name=f"Cirros {uuid.uuid4().hex[:6]}",
        container_disk_image="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="cirros",
        min_memory_mib=128,
    )


@pytest.fixture
def make_lab(db, image) -> Callable[..., Lab]:
    """A published lab of `machines` machines, with a namespace prefix unique to the test.

    Unique prefixes keep tests independent although they share one cluster (SQLite reuses
    instance ids after a rolled-back test, so `<prefix>-<id>` alone could collide).
    """

    def make(*, machines: int = 1, **fields) -> Lab:
        tag = uuid.uuid4().hex[:8]
        fields.setdefault("published", True)
        lab = Lab.objects.create(name=f"Lab {tag}", slug=f"lab-{tag}", namespace_prefix=f"t{tag}", **fields)
        for index in range(machines):
            LabMachine.objects.create(
                lab=lab, name=f"vm{index}", image=image, cores=1, memory_mib=256, order=index
            )
        return lab

    return make


def wait_until_running(instance: LabInstance, timeout: float = 10.0) -> lifecycle.InstanceStatus:
    def running() -> lifecycle.InstanceStatus | None:
        status = lifecycle.instance_refresh(instance=instance)
        assert status.status != LabInstance.Status.FAILED, status.last_error
        return status if status.status == LabInstance.Status.RUNNING else None

    return wait_for(running, timeout)


def wait_until_stopped(instance: LabInstance, timeout: float = 10.0) -> None:
    wait_for(
        lambda: lifecycle.instance_refresh(instance=instance).status == LabInstance.Status.STOPPED, timeout
    )
