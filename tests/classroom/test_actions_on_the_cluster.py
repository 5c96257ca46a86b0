"""Pause, resume and stop from the class view go through labs.lifecycle to the (local) cluster."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from classroom.models import ClassAction
from labs import lifecycle
from labs.models import LabInstance
from tests.labs.conftest import app_cluster, wait_for, wait_until_running  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def act(client, lab, **body):
    url = reverse("classroom:lab-actions", args=[lab.slug])
    return client.post(url, data=json.dumps(body), content_type="application/json").json()


def test_pause_resume_and_stop_a_students_lab(app_cluster, client, lab, student, instructor):  # noqa: F811
    instance = lifecycle.instance_start(user=student, lab=lab)
    wait_until_running(instance, timeout=60)
    client.force_login(instructor)

    assert act(client, lab, action="pause", instances=[instance.pk])["results"][0]["ok"]
    instance.refresh_from_db()
    assert instance.status == LabInstance.Status.PAUSED
    # A resume waits for the cluster to confirm the pause (labs.lifecycle): let it.
    wait_for(lambda: lifecycle.instance_refresh(instance=instance) and not instance.pending_action, 60)

    assert act(client, lab, action="resume", instances=[instance.pk])["results"][0]["ok"]
    instance.refresh_from_db()
    assert instance.status == LabInstance.Status.RUNNING

    assert act(client, lab, action="stop", instances=[instance.pk])["results"][0]["ok"]
    wait_for(lambda: lifecycle.instance_refresh(instance=instance).status == LabInstance.Status.STOPPED, 60)
    assert "Stopped by your instructor (ines)" in instance.last_error_plain
    assert list(ClassAction.objects.order_by("id").values_list("kind", "error")) == [
        ("pause", ""),
        ("resume", ""),
        ("stop", ""),
    ]


def test_a_refused_transition_is_reported_and_logged(app_cluster, client, lab, student, instructor):  # noqa: F811
    instance = lifecycle.instance_start(user=student, lab=lab)
    wait_until_running(instance, timeout=60)
    client.force_login(instructor)
    [result] = act(client, lab, action="resume", instances=[instance.pk])["results"]
    # Resuming a running instance is harmless (idempotent): it works and says so.
    assert result["ok"]
    lifecycle.instance_stop(instance=instance)
    wait_for(lambda: lifecycle.instance_refresh(instance=instance).status == LabInstance.Status.STOPPED, 60)
    [result] = act(client, lab, action="pause", instances=[instance.pk])["results"]
    assert not result["ok"] and "stopped" in result["message"]
    assert ClassAction.objects.filter(kind="pause").get().error == result["message"]
