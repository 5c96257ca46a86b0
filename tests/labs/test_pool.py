"""Ready instances: the pool starts them ahead, a student's start takes one that is already running
(owner labels, lifetime from the hand-over), exactly one student gets each, the pool refills and
shrinks in the background, and waiting instances never expire."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from labs import lifecycle, manifests
from labs.exceptions import InstanceLimitReached
from labs.models import LabInstance, ReadySchedule
from tests.labs.conftest import wait_for, wait_until_running

Status = LabInstance.Status


def fill_pool(lab, count: int) -> list[LabInstance]:
    """Run the housekeeping round until the lab has `count` running pool instances."""
    report = lifecycle.pool_refill()
    assert len(report.started) == count, report.errors
    instances = list(LabInstance.objects.filter(pk__in=report.started))
    for instance in instances:
        wait_until_running(instance)
    return instances


@pytest.mark.django_db
def test_a_start_takes_a_running_ready_instance_and_it_becomes_the_students(
    app_cluster, make_lab, student, admin_core, admin_vmis
):
    lab = make_lab(machines=2, ready_instances=2, lifetime_minutes=60)
    ready = fill_pool(lab, 2)
    pool = lifecycle.pool_account()
    assert {instance.owner_id for instance in ready} == {pool.pk}
    assert not pool.is_active and not pool.has_usable_password()

    before = timezone.now()
    instance = lifecycle.instance_start(user=student, lab=lab)

    assert instance.pk == min(i.pk for i in ready)
    assert instance.status == Status.RUNNING  # usable at once: no cold start
    assert instance.owner == student and not instance.pooled
    assert before <= instance.handed_over_at <= timezone.now()
    assert instance.expires_at >= before + timedelta(minutes=60)
    labels = admin_core.read_namespace(instance.namespace).metadata.labels
    assert labels[manifests.OWNER_LABEL] == str(student.pk)
    assert {vmi["metadata"]["labels"][manifests.OWNER_LABEL] for vmi in admin_vmis(instance.namespace)} == {
        str(student.pk)
    }
    assert LabInstance.objects.filter(owner=student).count() == 1
    assert LabInstance.objects.visible_to(student).get() == instance

    # The next round refills the pool to two.
    refill = lifecycle.pool_refill()
    assert len(refill.started) == 1
    assert LabInstance.objects.filter(lab=lab, pooled=True).active().count() == 2


@pytest.mark.django_db
def test_without_a_ready_instance_the_start_is_cold(app_cluster, make_lab, student):
    lab = make_lab(ready_instances=1)
    lifecycle.pool_refill()  # started but not running yet: not handed over
    instance = lifecycle.instance_start(user=student, lab=lab)
    assert instance.status == Status.STARTING and instance.handed_over_at is None
    assert instance.owner == student


@pytest.mark.django_db
def test_the_students_limits_apply_to_a_hand_over(app_cluster, make_lab, student):
    lab = make_lab(ready_instances=2, instances_per_user=1)
    fill_pool(lab, 2)
    lifecycle.instance_start(user=student, lab=lab)
    with pytest.raises(InstanceLimitReached):
        lifecycle.instance_start(user=student, lab=lab)
    assert LabInstance.objects.filter(lab=lab, pooled=True, status=Status.RUNNING).count() == 1


@pytest.mark.django_db
def test_waiting_instances_never_expire_and_the_lifetime_counts_from_the_hand_over(
    app_cluster, make_lab, student
):
    lab = make_lab(ready_instances=1, idle_timeout_minutes=30, lifetime_minutes=30)
    (waiting,) = fill_pool(lab, 1)
    long_ago = timezone.now() - timedelta(hours=5)
    LabInstance.objects.filter(pk=waiting.pk).update(started_at=long_ago, expires_at=long_ago)
    assert lifecycle.instance_expire_due() == []

    instance = lifecycle.instance_start(user=student, lab=lab)
    assert instance.pk == waiting.pk
    assert lifecycle.instance_expire_due() == []  # a fresh lifetime and idle time from now
    assert instance.expires_at > timezone.now() + timedelta(minutes=29)


@pytest.mark.django_db
def test_a_schedule_fills_the_pool_ahead_of_its_time_then_the_surplus_stops(app_cluster, make_lab, settings):
    settings.POOL_LEAD_MINUTES = 10
    lab = make_lab(ready_instances=1)
    now = timezone.now()
    ReadySchedule.objects.create(lab=lab, count=3, starts_at=now + timedelta(minutes=30), duration_minutes=60)
    assert lifecycle.pool_target(lab, now) == 1
    assert lifecycle.pool_target(lab, now + timedelta(minutes=21)) == 3
    assert lifecycle.pool_target(lab, now + timedelta(minutes=89)) == 3
    assert lifecycle.pool_target(lab, now + timedelta(minutes=91)) == 1

    report = lifecycle.pool_refill(now=now + timedelta(minutes=21))
    assert len(report.started) == 3
    for instance in LabInstance.objects.filter(pk__in=report.started):
        wait_until_running(instance)

    shrink = lifecycle.pool_refill(now=now + timedelta(minutes=91))
    assert len(shrink.stopped) == 2
    assert LabInstance.objects.filter(lab=lab, pooled=True).active().count() == 1


@pytest.mark.django_db
def test_unpublished_labs_keep_no_pool(app_cluster, make_lab):
    lab = make_lab(ready_instances=1)
    fill_pool(lab, 1)
    lab.published = False
    lab.save()
    assert len(lifecycle.pool_refill().stopped) == 1


@pytest.mark.django_db
def test_the_reconcile_loop_refills(app_cluster, make_lab):
    lab = make_lab(ready_instances=1)
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "Started 1 ready instance" in out.getvalue()
    instance = LabInstance.objects.get(lab=lab, pooled=True)
    wait_for(
        lambda: (
            call_command("reconcile", stdout=StringIO())
            or LabInstance.objects.get(pk=instance.pk).status == Status.RUNNING
        )
    )


@pytest.mark.django_db(transaction=True)
def test_parallel_starts_never_hand_one_instance_to_two_students(app_cluster, make_lab):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...) for real parallel transactions")
    lab = make_lab(ready_instances=3)
    fill_pool(lab, 3)
    ready_ids = set(LabInstance.objects.filter(pooled=True).values_list("pk", flat=True))
    students = [get_user_model().objects.create_user(username=f"p{n}") for n in range(8)]
    barrier = threading.Barrier(len(students))
    results: dict[int, LabInstance] = {}

    def start(user) -> None:
        barrier.wait()
        try:
            results[user.pk] = lifecycle.instance_start(user=user, lab=lab)
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(user,)) for user in students]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    handed = [instance for instance in results.values() if instance.pk in ready_ids]
    assert len(results) == 8
    assert sorted(instance.pk for instance in handed) == sorted(ready_ids)  # each exactly once
    for user_id, instance in results.items():
        assert LabInstance.objects.get(pk=instance.pk).owner_id == user_id
    assert LabInstance.objects.filter(pk__in=ready_ids, pooled=True).count() == 0
