"""What the class view shows: rows per student's current instance, flags, the step summary, CSV,
and a fixed number of queries however big the class."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classroom.access import lab_scope
from classroom.roster import class_state
from classroom.services import position_record
from labs.models import LabInstance
from tutorials.models import CheckRun, StepCompletion, StepVerification, TutorialPage

pytestmark = pytest.mark.django_db


def rows_by_student(lab, instructor, **kwargs) -> dict[str, dict]:
    return {row["student"]: row for row in class_state(lab_scope(instructor, lab.slug), **kwargs).rows}


def test_rows_show_status_progress_page_and_failed_checks(
    lab, tutorial, steps, student, other_student, instructor, make_instance
):
    mine = make_instance(owner=student, lab=lab)
    theirs = make_instance(owner=other_student, lab=lab, status=LabInstance.Status.PAUSED)
    StepCompletion.objects.create(user=student, step=steps[0])
    StepCompletion.objects.create(user=student, step=steps[2])  # a tick on a checked step does not count
    CheckRun.objects.create(instance=mine, step=steps[2], user=student, result=CheckRun.Result.FAILED)
    second_page = TutorialPage.objects.get(tutorial=tutorial, order=1)
    position_record(user=student, instance=mine, tutorial=tutorial, page=second_page)
    StepVerification.objects.create(instance=theirs, step=steps[2])

    rows = rows_by_student(lab, instructor)
    alice, bob = rows["alice"], rows["bob"]
    assert (alice["status"], alice["steps_done"], alice["steps_total"]) == ("running", 1, 3)
    assert (alice["checks_passed"], alice["checks_total"]) == (0, 1)
    assert alice["failed_checks"] == ["Basics · page 2 · step 1"] and alice["failed"]
    assert alice["current_page"] == "Basics · Services"
    assert 3500 < alice["seconds_left"] <= 3600
    assert (bob["status"], bob["checks_passed"], bob["steps_done"], bob["failed"]) == ("paused", 1, 1, False)


def test_a_passed_check_after_a_failure_is_no_longer_failed(lab, steps, student, instructor, make_instance):
    instance = make_instance(owner=student, lab=lab)
    CheckRun.objects.create(instance=instance, step=steps[2], user=student, result=CheckRun.Result.FAILED)
    CheckRun.objects.create(instance=instance, step=steps[2], user=student, result=CheckRun.Result.PASSED)
    assert rows_by_student(lab, instructor)["alice"]["failed_checks"] == []


def test_stuck_and_finished(lab, steps, student, other_student, instructor, make_instance):
    make_instance(owner=student, lab=lab, minutes_ago=30)  # no progress in 30 min
    done = make_instance(owner=other_student, lab=lab, minutes_ago=30)
    StepCompletion.objects.create(user=other_student, step=steps[0])
    StepCompletion.objects.create(user=other_student, step=steps[1])
    StepVerification.objects.create(instance=done, step=steps[2])
    rows = rows_by_student(lab, instructor, stuck_minutes=10)
    assert (rows["alice"]["stuck"], rows["alice"]["finished"]) == (True, False)
    assert (rows["bob"]["stuck"], rows["bob"]["finished"]) == (False, True)
    assert rows_by_student(lab, instructor, stuck_minutes=45)["alice"]["stuck"] is False


def test_only_the_newest_instance_per_student_and_not_other_labs(
    lab, image, steps, student, instructor, make_instance
):
    from labs.models import Lab

    old = make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    LabInstance.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    new = make_instance(owner=student, lab=lab)
    other_lab = Lab.objects.create(name="Other", slug="other", namespace_prefix="other", owner=instructor)
    make_instance(owner=student, lab=other_lab)
    rows = class_state(lab_scope(instructor, lab.slug)).rows
    assert [row["instance"] for row in rows] == [new.pk]


def test_step_summary_counts_reached_passed_and_median_time(
    lab, tutorial, steps, student, other_student, instructor, make_instance
):
    first = make_instance(owner=student, lab=lab)
    second = make_instance(owner=other_student, lab=lab)
    for user, instance, minutes in ((student, first, 2), (other_student, second, 6)):
        tick = StepCompletion.objects.create(user=user, step=steps[0])
        StepCompletion.objects.filter(pk=tick.pk).update(
            completed_at=instance.started_at + timedelta(minutes=minutes)
        )
    position_record(user=student, instance=first, tutorial=tutorial, page=TutorialPage.objects.get(order=1))
    summary = {s["step"]: s for s in class_state(lab_scope(instructor, lab.slug)).steps}
    assert (summary[steps[0].pk]["reached"], summary[steps[0].pk]["passed"]) == (2, 2)
    assert summary[steps[0].pk]["median_minutes"] == 4.0
    assert (summary[steps[1].pk]["reached"], summary[steps[1].pk]["passed"]) == (1, 0)  # alice is past page 1
    assert (summary[steps[2].pk]["reached"], summary[steps[2].pk]["checked"]) == (1, True)


def test_polling_costs_the_same_queries_for_3_or_30_students(
    client, lab, steps, instructor, make_instance, django_user_model, django_assert_max_num_queries
):
    def add_students(count: int, start: int) -> None:
        for n in range(start, start + count):
            user = django_user_model.objects.create_user(username=f"s{n:03}", password="pw-x-12345")
            instance = make_instance(owner=user, lab=lab)
            StepCompletion.objects.create(user=user, step=steps[0])
            CheckRun.objects.create(
                instance=instance, step=steps[2], user=user, result=CheckRun.Result.FAILED
            )

    client.force_login(instructor)
    url = reverse("classroom:lab-state", args=[lab.slug])
    add_students(3, 0)
    client.get(url)  # warm: the session and the user
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert len(client.get(url).json()["rows"]) == 3
    add_students(27, 3)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(client.get(url).json()["rows"]) == 30


def test_csv_export_has_a_row_per_student_and_defuses_formulas(
    client, lab, steps, instructor, django_user_model, make_instance
):
    user = django_user_model.objects.create_user(username="=cmd|calc", password="pw-x-12345")
    make_instance(owner=user, lab=lab)
    client.force_login(instructor)
    response = client.get(reverse("classroom:lab-export", args=[lab.slug]))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    assert rows[0]["student"] == "'=cmd|calc"
    assert (rows[0]["steps_done"], rows[0]["steps_total"], rows[0]["status_label"]) == ("0", "3", "Running")


def test_watches_show_in_the_action_log(lab, student, instructor, make_instance):
    from vncproxy.models import ConsoleWatch

    instance = make_instance(owner=student, lab=lab)
    ConsoleWatch.objects.create(observer=instructor, instance=instance, machine_name="web", kind="serial")
    state = class_state(lab_scope(instructor, lab.slug))
    [entry] = state.actions
    assert (entry["actor"], entry["kind"], entry["student"]) == ("ines", "watch", "alice")
    assert entry["detail"] == "web terminal, watching now"
    assert state.rows[0]["watched_now"]
