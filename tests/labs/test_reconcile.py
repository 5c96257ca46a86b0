"""Reconcile makes the cluster and the database agree, and can run twice at once."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from kubernetes import client

from labs import cluster, lifecycle, manifests
from labs.installation import installation_id
from labs.models import LabInstance
from tests.labs.conftest import namespace_exists, wait_for, wait_until_running

Status = LabInstance.Status


def create_namespace(admin_core, name, labels):
    admin_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))


def ours() -> dict[str, str]:
    """The labels this installation's namespaces carry."""
    return {
        manifests.MANAGED_BY_LABEL: manifests.MANAGED_BY,
        manifests.INSTALLATION_LABEL: installation_id(),
    }


@pytest.mark.django_db
def test_orphan_namespaces_are_deleted_and_foreign_ones_left_alone(
    app_cluster, admin_core, make_lab, student
):
    kept = lifecycle.instance_start(user=student, lab=make_lab())
    create_namespace(admin_core, "orphan-lab-1", ours())
    create_namespace(admin_core, "someone-elses", {"team": "infra"})
    out = StringIO()

    call_command("reconcile", stdout=out)

    assert "orphan-lab-1" in out.getvalue()
    wait_for(lambda: not namespace_exists(admin_core, "orphan-lab-1"))
    assert namespace_exists(admin_core, "someone-elses")
    assert namespace_exists(admin_core, kept.namespace)
    admin_core.delete_namespace("someone-elses")


@pytest.mark.django_db
def test_instances_whose_namespace_vanished_are_failed_with_the_reason(
    app_cluster, admin_core, make_lab, student
):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    admin_core.delete_namespace(instance.namespace)
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace))

    report = lifecycle.reconcile()

    assert report.failed == [instance.pk]
    instance.refresh_from_db()
    assert instance.status == Status.FAILED
    assert "deleted outside" in instance.last_error


@pytest.mark.django_db
def test_stops_are_finished_and_states_refreshed(app_cluster, admin_core, make_lab, student):
    stopping = lifecycle.instance_start(user=student, lab=make_lab())
    starting = lifecycle.instance_start(user=student, lab=make_lab())
    # A stop whose process died after claiming the instance, before deleting anything.
    LabInstance.objects.filter(pk=stopping.pk).update(status=Status.STOPPING)

    def settled():
        lifecycle.reconcile()
        stopping.refresh_from_db()
        starting.refresh_from_db()
        return stopping.status == Status.STOPPED and starting.status == Status.RUNNING

    wait_for(settled)
    assert not namespace_exists(admin_core, stopping.namespace)


@pytest.mark.django_db
def test_failed_instances_leftovers_are_removed(app_cluster, admin_core, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    LabInstance.objects.filter(pk=instance.pk).update(status=Status.FAILED)

    assert instance.namespace in lifecycle.reconcile().orphans_deleted
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace))


@pytest.mark.django_db
def test_abandoned_and_stuck_starts_are_failed(app_cluster, make_lab, student, settings, monkeypatch):
    settings.LABS_START_TIMEOUT_SECONDS = 60
    lab = make_lab()
    long_ago = timezone.now() - timedelta(minutes=2)
    stuck = lifecycle.instance_start(user=student, lab=lab)
    LabInstance.objects.filter(pk=stuck.pk).update(started_at=long_ago)
    # Its machine never gets past scheduling (on a real cluster: no node has room, quota...).
    stuck_vmi = {"metadata": {"name": "vm0"}, "status": {"phase": "Scheduling"}}
    monkeypatch.setattr(cluster, "list_vmis", lambda **kwargs: [stuck_vmi])
    abandoned = LabInstance.objects.create(lab=lab, owner=student, namespace=f"{lab.namespace_prefix}-x")
    LabInstance.objects.filter(pk=abandoned.pk).update(created_at=long_ago)
    in_progress = LabInstance.objects.create(lab=make_lab(), owner=student, namespace="not-yet-created")

    lifecycle.reconcile()

    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.last_error) == (Status.FAILED, "The start was interrupted.")
    stuck.refresh_from_db()
    assert stuck.status == Status.FAILED
    assert stuck.last_error == "The machines did not start within 60 seconds."
    in_progress.refresh_from_db()
    assert in_progress.status == Status.REQUESTED


@pytest.mark.django_db(transaction=True)
def test_two_reconcilers_at_once_do_each_job_once(app_cluster, admin_core, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    LabInstance.objects.filter(pk=instance.pk).update(status=Status.STOPPING)
    for index in range(3):
        create_namespace(admin_core, f"orphan-race-{index}", ours())
    errors = []

    def run():
        try:
            lifecycle.reconcile()
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    for index in range(3):
        wait_for(lambda index=index: not namespace_exists(admin_core, f"orphan-race-{index}"))

    def stopped():
        lifecycle.reconcile()
        instance.refresh_from_db()
        return instance.status == Status.STOPPED

    wait_for(stopped)
