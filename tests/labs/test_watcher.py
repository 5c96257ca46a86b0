"""The status watcher (labs.watcher) against the local cluster: it lists and watches this
installation's namespaces and VMIs, and records instance and machine status through labs.lifecycle,
without a cluster call per instance."""

from __future__ import annotations

import uuid

import pytest

from labs import cluster, lifecycle
from labs.models import ClusterWatch, LabInstance
from labs.watch_health import watch_health
from labs.watcher import ClusterWatcher
from localcluster.harness import start_local_cluster
from tests.labs.conftest import wait_for, watched

Status = LabInstance.Status
pytestmark = pytest.mark.django_db


def reread(instance: LabInstance) -> LabInstance:
    instance.refresh_from_db()
    return instance


def test_a_started_lab_becomes_running_with_machine_status_recorded(cluster_watcher, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    assert instance.status == Status.STARTING

    watched(cluster_watcher, lambda: reread(instance).status == Status.RUNNING)

    machines = list(instance.machines.all())
    assert [m.phase for m in machines] == ["Running", "Running"]
    assert all(m.ip_address.startswith("10.244.") and m.observed_at for m in machines)
    assert instance.observed_at is not None


def test_a_stop_finishes_when_the_watch_sees_the_namespace_go(cluster_watcher, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    watched(cluster_watcher, lambda: reread(instance).status == Status.RUNNING)
    lifecycle.instance_stop(instance=instance)

    watched(cluster_watcher, lambda: reread(instance).status == Status.STOPPED)
    assert instance.stopped_at is not None


def test_a_namespace_deleted_behind_our_back_fails_the_instance(
    cluster_watcher, make_lab, student, admin_core
):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    watched(cluster_watcher, lambda: reread(instance).status == Status.RUNNING)
    admin_core.delete_namespace(instance.namespace)

    watched(cluster_watcher, lambda: reread(instance).status == Status.FAILED)
    assert "deleted outside" in instance.last_error


def test_a_machine_that_cannot_start_fails_with_the_clusters_reason(
    cluster_watcher, app_cluster, make_lab, student, image
):
    image.container_disk_image = f"registry.example.org/labs/missing-{uuid.uuid4().hex[:8]}:1"
    image.save()
    app_cluster.faults.missing_image(image.container_disk_image)
    instance = lifecycle.instance_start(user=student, lab=make_lab())

    watched(cluster_watcher, lambda: reread(instance).status == Status.FAILED)
    assert "ErrImagePull" in instance.last_error or "ImagePullBackOff" in instance.last_error
    assert "disk image could not be downloaded" in instance.last_error_plain


def test_pause_is_confirmed_by_the_watch(cluster_watcher, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    watched(cluster_watcher, lambda: reread(instance).status == Status.RUNNING)
    lifecycle.instance_pause(instance=instance)
    assert instance.pending_action == "pause"

    watched(cluster_watcher, lambda: not reread(instance).pending_action)
    assert instance.status == Status.PAUSED
    assert all(m.paused for m in instance.machines.all())


def test_one_list_and_one_watch_per_kind_however_many_instances(cluster_watcher, make_lab, student, settings):
    settings.LABS_MAX_INSTANCES_PER_USER = 5
    lab = make_lab(instances_per_user=3)
    instances = [lifecycle.instance_start(user=student, lab=lab) for _ in range(3)]
    watched(cluster_watcher, lambda: all(reread(i).status == Status.RUNNING for i in instances))

    for _ in range(20):
        cluster_watcher.mark_all_active()  # resyncs come from memory
        assert cluster_watcher.apply_pending() == 3
    counts = cluster_watcher.counts()
    assert counts == {
        "namespaces": {"lists": 1, "watches": 1},
        "virtualmachineinstances": {"lists": 1, "watches": 1},
        "pods": {"lists": 1, "watches": 1},
    }


@pytest.fixture
def short_history_cluster(tmp_path, settings):
    """A local cluster of the test's own that keeps only 3 watch events: "too old" in a few writes."""
    with start_local_cluster(tmp_path / "lc", extra_args=("--watch-history", "3")) as short:
        settings.KUBECONFIG = str(short.kubeconfig)
        settings.KUBE_CONTEXT = "laborchestrator"
        settings.KUBE_IN_CLUSTER = False
        cluster.reset_client()
        yield short
    cluster.reset_client()


def test_a_410_relists_and_keeps_recording(short_history_cluster, db, make_lab, student):
    """While a watch is down, more changes happen than the server keeps: the next watch gets
    410 Gone, and the watcher lists again and still sees what changed meanwhile."""
    watcher = ClusterWatcher()
    watcher.start()
    try:
        wait_for(lambda: watcher.synced)
        first_lists = watcher.counts()["namespaces"]["lists"]
        instance = lifecycle.instance_start(user=student, lab=make_lab())
        watched(watcher, lambda: reread(instance).status == Status.RUNNING)
        # The server's history now starts well after the first list's resourceVersion: a watch
        # resumed from there is refused (the test's own watcher, so its state is ours to set).
        for state in watcher._states.values():
            state.resource_version = "2"
        watcher.reconnect()
        lifecycle.instance_stop(instance=instance)
        watched(watcher, lambda: reread(instance).status == Status.STOPPED, timeout=15)
        assert watcher.counts()["namespaces"]["lists"] > first_lists
    finally:
        watcher.stop()


def test_the_watch_reconnects_after_a_dropped_connection(app_cluster, db, make_lab, student):
    app_cluster.faults.clear()
    watcher = ClusterWatcher()
    watcher.start()
    try:
        wait_for(lambda: watcher.synced)
        app_cluster.faults.drop_watch("namespaces", after_events=0)
        watcher.reconnect()
        instance = lifecycle.instance_start(user=student, lab=make_lab())
        watched(watcher, lambda: reread(instance).status == Status.RUNNING)
        assert watcher.counts()["namespaces"]["watches"] >= 2
    finally:
        watcher.stop()


def test_heartbeat_says_in_sync_and_an_unreachable_cluster_says_since_when(
    cluster_watcher, app_cluster, settings
):
    cluster_watcher.heartbeat()
    health = watch_health()
    assert health.in_sync and health.unreachable_since is None

    settings.KUBECONFIG = "/nonexistent/kubeconfig"
    from labs import cluster

    cluster.reset_client()
    cluster_watcher.heartbeat()
    health = watch_health()
    assert not health.in_sync
    assert health.unreachable_since is not None
    assert "misconfigured" in ClusterWatch.objects.get().last_error


def test_a_watcher_that_stopped_beating_is_not_alive(cluster_watcher, settings):
    cluster_watcher.heartbeat()
    settings.LABS_WATCH_STALE_SECONDS = 0
    health = watch_health()
    assert not health.watcher_alive and not health.in_sync
    assert health.last_error == "The cluster watcher is not running."


def test_a_watcher_never_run_is_reported(db):
    assert watch_health().last_error == "The cluster watcher has never run."
