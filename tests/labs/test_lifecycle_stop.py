"""Stopping removes every trace of an instance from the cluster, whatever state it is in."""

import threading

import pytest
from django.db import connection

from labs import cluster, lifecycle
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
