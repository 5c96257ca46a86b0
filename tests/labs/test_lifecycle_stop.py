"""Stopping removes every trace of an instance from the cluster, whatever state it is in."""

import threading

import pytest
from django.db import connection

from labs import cluster, lifecycle, manifests
from labs.models import LabInstance
from tests.labs.conftest import namespace_exists, wait_for, wait_until_running, wait_until_stopped

Status = LabInstance.Status


@pytest.mark.django_db
def test_stop_deletes_the_namespace_and_ends_stopped(app_cluster, admin_core, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    wait_until_running(instance)

    lifecycle.instance_stop(instance=instance)

    assert instance.status in (Status.STOPPING, Status.STOPPED)
    wait_until_stopped(instance)
    assert not namespace_exists(admin_core, instance.namespace)
    instance.refresh_from_db()
    assert instance.status == Status.STOPPED
    assert instance.stopped_at is not None


@pytest.mark.django_db
def test_stop_waits_for_a_terminating_namespace(app_cluster, admin_core, make_lab, student, monkeypatch):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    # The local cluster empties a namespace within milliseconds; a real one takes seconds to
    # minutes. Make the first "is it gone?" look see it still Terminating, as on a real cluster.
    real_read = cluster.read_namespace
    answers = iter([cluster.NamespaceInfo(name=instance.namespace, labels={}, phase="Terminating")])
    monkeypatch.setattr(cluster, "read_namespace", lambda name: next(answers, None) or real_read(name))

    lifecycle.instance_stop(instance=instance)

    assert instance.status == Status.STOPPING
    assert LabInstance.objects.get(pk=instance.pk).status == Status.STOPPING
    wait_until_stopped(instance)
    assert not namespace_exists(admin_core, instance.namespace)


@pytest.mark.django_db
def test_stopping_twice_is_harmless(app_cluster, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    lifecycle.instance_stop(instance=instance)
    lifecycle.instance_stop(instance=instance)
    wait_until_stopped(instance)

    assert lifecycle.instance_stop(instance=instance).status == Status.STOPPED


@pytest.mark.django_db
def test_stop_succeeds_when_the_namespace_is_already_gone(app_cluster, admin_core, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    admin_core.delete_namespace(instance.namespace)
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace))

    lifecycle.instance_stop(instance=instance)

    assert instance.status == Status.STOPPED


@pytest.mark.django_db
def test_a_failed_instance_can_be_stopped_to_clean_up(app_cluster, admin_core, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    LabInstance.objects.filter(pk=instance.pk).update(status=Status.FAILED, last_error="boom")
    instance.refresh_from_db()

    lifecycle.instance_stop(instance=instance)
    wait_until_stopped(instance)

    assert not namespace_exists(admin_core, instance.namespace)


@pytest.mark.django_db(transaction=True)
def test_stop_during_start_leaves_nothing_behind(app_cluster, admin_core, make_lab, student):
    lab = make_lab(machines=2)
    # The VMI creates hang, so the stop arrives while the start is half way.
    app_cluster.faults.hang("create", "virtualmachineinstances", seconds=1.0, times=2)
    outcome = {}

    def start():
        try:
            outcome["instance"] = lifecycle.instance_start(user=student, lab=lab)
        except Exception as error:
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=start)
    thread.start()
    instance = wait_for(lambda: LabInstance.objects.filter(lab=lab, namespace__isnull=False).first())
    wait_for(lambda: namespace_exists(admin_core, instance.namespace))

    lifecycle.instance_stop(instance=instance)
    thread.join(timeout=20)

    assert "error" not in outcome, outcome.get("error")
    wait_until_stopped(instance)
    assert not namespace_exists(admin_core, instance.namespace)


def _hold_terminating(local_cluster, namespace: str, seconds: int = 6) -> None:
    """A VMI whose guest takes `seconds` to stop keeps the namespace Terminating that long, as a real
    cluster's namespace controller takes seconds to empty a namespace."""
    from kubernetes import client as k8s

    from tests.localcluster.lc_helpers import call, small_vmi

    slow = small_vmi("slow")
    slow["spec"]["terminationGracePeriodSeconds"] = seconds
    api = local_cluster.api_client("admin")
    # Room for it: the lab's quota has none to spare.
    call(api, "DELETE", f"/api/v1/namespaces/{namespace}/resourcequotas/{manifests.RESOURCE_QUOTA_NAME}")
    vmis = k8s.CustomObjectsApi(api)
    vmis.create_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachineinstances", slow)
    # Only a running guest takes its grace period to stop.
    wait_for(
        lambda: (
            vmis.get_namespaced_custom_object(
                "kubevirt.io", "v1", namespace, "virtualmachineinstances", "slow"
            )
            .get("status", {})
            .get("phase")
            == "Running"
        ),
        timeout=30,
    )


def _namespace_calls(local_cluster, namespace: str, verb: str) -> list[dict]:
    return [
        call
        for call in local_cluster.faults.calls()
        if call["resource"] == "namespaces" and call["name"] == namespace and call["verb"] == verb
    ]


@pytest.mark.django_db
def test_a_stop_deletes_once_then_only_reads_until_the_namespace_is_gone(
    app_cluster, admin_core, make_lab, student
):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    _hold_terminating(app_cluster, instance.namespace)
    app_cluster.faults.reset_calls()

    lifecycle.instance_stop(instance=instance)
    for _ in range(3):  # the student's page polls while the namespace terminates
        assert lifecycle.instance_refresh(instance=instance).status == Status.STOPPING
    lifecycle.reconcile()
    wait_until_stopped(instance, timeout=30)

    assert len(_namespace_calls(app_cluster, instance.namespace, "delete")) == 1
    assert len(_namespace_calls(app_cluster, instance.namespace, "get")) >= 5
    assert not namespace_exists(admin_core, instance.namespace)


@pytest.mark.django_db
def test_a_409_on_the_namespace_delete_means_it_is_already_going(app_cluster, admin_core, make_lab, student):
    """Kubernetes 1.16 and older answer a repeated DELETE of a Terminating namespace with 409 Conflict
    (pkg/registry/core/namespace/storage/storage.go before kubernetes/kubernetes#84122)."""
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    _hold_terminating(app_cluster, instance.namespace)
    admin_core.delete_namespace(instance.namespace)  # someone (another replica) already deleted it
    app_cluster.faults.fail("delete", "namespaces", status=409, times=None)

    lifecycle.instance_stop(instance=instance)

    assert instance.status == Status.STOPPING
    assert instance.last_error == ""
    wait_until_stopped(instance, timeout=30)


@pytest.mark.django_db
def test_a_stop_whose_delete_never_arrived_deletes_at_the_next_look(
    app_cluster, admin_core, make_lab, student
):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    app_cluster.faults.fail("delete", "namespaces", status=503, times=1)
    with pytest.raises(cluster.ClusterUnavailable):
        lifecycle.instance_stop(instance=instance)
    assert LabInstance.objects.get(pk=instance.pk).status == Status.STOPPING
    assert namespace_exists(admin_core, instance.namespace)

    # The namespace is still Active: the next look (a page poll, reconcile) deletes it.
    wait_until_stopped(instance)
    assert not namespace_exists(admin_core, instance.namespace)
