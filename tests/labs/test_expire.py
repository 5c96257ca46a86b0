"""Instances stop themselves at the end of their lifetime or after too long without activity."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from labs import lifecycle
from labs.models import LabInstance
from tests.labs.conftest import namespace_exists, wait_for, wait_until_running

pytestmark = pytest.mark.django_db
Status = LabInstance.Status


@pytest.fixture
def running(app_cluster, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(idle_timeout_minutes=30))
    wait_until_running(instance)
    return instance


def final_status(instance):
    def done():
        lifecycle.instance_refresh(instance=instance)
        return instance.status in (Status.STOPPED, Status.EXPIRED)

    wait_for(done)
    return instance.status


def test_instances_past_their_lifetime_expire(running, admin_core):
    LabInstance.objects.filter(pk=running.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    out = StringIO()

    call_command("expire", stdout=out)

    assert f"{running.pk}" in out.getvalue()
    running.refresh_from_db()
    assert final_status(running) == Status.EXPIRED
    assert not namespace_exists(admin_core, running.namespace)


def test_idle_instances_expire(running):
    LabInstance.objects.filter(pk=running.pk).update(last_activity_at=timezone.now() - timedelta(minutes=31))

    assert lifecycle.instance_expire_due() == [running.pk]

    running.refresh_from_db()
    assert running.expires_at <= timezone.now()
    assert final_status(running) == Status.EXPIRED


def test_without_activity_the_idle_time_counts_from_the_start(running):
    LabInstance.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(minutes=31))

    assert lifecycle.instance_expire_due() == [running.pk]


def test_active_instances_keep_running(running):
    lifecycle.instance_touch(instance=running)

    assert lifecycle.instance_expire_due(now=timezone.now() + timedelta(minutes=29)) == []
    running.refresh_from_db()
    assert running.status == Status.RUNNING


def test_an_idle_timeout_of_zero_means_never(running):
    running.lab.idle_timeout_minutes = 0
    running.lab.save()
    assert lifecycle.instance_expire_due(now=timezone.now() + timedelta(minutes=100)) == []


def test_each_due_instance_is_claimed_once(running):
    LabInstance.objects.filter(pk=running.pk).update(expires_at=timezone.now())

    assert lifecycle.instance_expire_due() == [running.pk]
    assert lifecycle.instance_expire_due() == []


def test_activity_is_written_at_most_once_a_minute(running, django_assert_num_queries):
    lifecycle.instance_touch(instance=running)
    first = LabInstance.objects.get(pk=running.pk).last_activity_at
    assert first is not None

    with django_assert_num_queries(0):
        lifecycle.instance_touch(instance=running)
    # Another process holding an old copy does not write either.
    stale = LabInstance.objects.get(pk=running.pk)
    stale.last_activity_at = None
    lifecycle.instance_touch(instance=stale)
    assert LabInstance.objects.get(pk=running.pk).last_activity_at == first
