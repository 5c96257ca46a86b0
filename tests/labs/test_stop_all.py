"""`manage.py stop_instances`: every active instance stopped with the reason recorded (what `make run`
does when its local cluster shuts down), nothing left in the cluster."""

import pytest
from django.core.management import call_command
from kubernetes import client

from labs import lifecycle
from labs.models import LabInstance
from tests.labs.conftest import wait_until_running, wait_until_stopped

Status = LabInstance.Status
REASON = "Stopped because the local cluster shut down (make run ended)."


@pytest.mark.django_db
def test_every_active_instance_is_stopped_with_the_reason(
    app_cluster, make_lab, student, other_student, capsys
):
    lab = make_lab(instances_per_user=2)
    running = lifecycle.instance_start(user=student, lab=lab)
    wait_until_running(running)
    paused = lifecycle.instance_start(user=other_student, lab=lab)
    wait_until_running(paused)
    lifecycle.instance_pause(instance=paused)
    starting = lifecycle.instance_start(user=student, lab=lab)
    done = lifecycle.instance_start(user=other_student, lab=lab)
    lifecycle.instance_stop(instance=done)
    wait_until_stopped(done)

    call_command("stop_instances", "--reason", REASON, "--wait", "20")

    assert "Stopped 3 of 3 lab instances." in capsys.readouterr().out
    for instance in (running, paused, starting):
        instance.refresh_from_db()
        assert (instance.status, instance.last_error) == (Status.STOPPED, REASON)
        assert instance.stopped_at is not None
    done.refresh_from_db()
    assert (done.status, done.last_error) == (Status.STOPPED, "")  # already stopped: untouched
    namespaces = client.CoreV1Api(app_cluster.api_client()).list_namespace().items
    assert not {i.namespace for i in (running, paused, starting)} & {n.metadata.name for n in namespaces}


@pytest.mark.django_db
def test_without_active_instances_it_says_nothing(app_cluster, capsys):
    call_command("stop_instances", "--reason", REASON)
    assert capsys.readouterr().out == ""
