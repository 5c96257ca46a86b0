"""Instructors' actions: through the lifecycle, on one student or a selection, each logged (also
when it fails); messages reach the student's banner and nobody else's."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse

from classroom.models import ClassAction, StudentMessage
from labs.models import Lab, LabInstance

pytestmark = pytest.mark.django_db


def act(client, lab, **body):
    url = reverse("classroom:lab-actions", args=[lab.slug])
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_extend_a_selection_moves_each_expiry_and_logs_it(
    client, lab, student, other_student, instructor, make_instance
):
    first, second = make_instance(owner=student, lab=lab), make_instance(owner=other_student, lab=lab)
    before = {i.pk: i.expires_at for i in (first, second)}
    client.force_login(instructor)
    answer = act(client, lab, action="extend", instances=[first.pk, second.pk], minutes=20).json()
    assert [r["ok"] for r in answer["results"]] == [True, True]
    for instance in (first, second):
        instance.refresh_from_db()
        assert instance.expires_at - before[instance.pk] == timedelta(minutes=20)
    logged = ClassAction.objects.filter(kind="extend", actor=instructor)
    assert sorted(logged.values_list("instance_id", flat=True)) == sorted([first.pk, second.pk])
    assert set(logged.values_list("detail", "error")) == {("+20 min", "")}
    state = client.get(reverse("classroom:lab-state", args=[lab.slug])).json()
    assert [a["kind"] for a in state["actions"]] == ["extend", "extend"]


def test_a_stopped_instance_is_not_extended_and_the_failure_is_logged(
    client, lab, student, instructor, make_instance
):
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    client.force_login(instructor)
    [result] = act(client, lab, action="extend", instances=[instance.pk], minutes=10).json()["results"]
    assert not result["ok"] and "stopped" in result["message"].lower()
    assert ClassAction.objects.get().error == result["message"]


@pytest.mark.parametrize(
    "body, error",
    [
        ({"action": "explode", "instances": [1]}, "Unknown action"),
        ({"action": "message", "instances": [1], "text": "  "}, "Write a message"),
        ({"action": "message", "instances": [1], "text": "x" * 501}, "at most 500"),
        ({"action": "extend", "instances": [1], "minutes": 0}, "1 to 1440"),
        ({"action": "extend", "instances": [1], "minutes": "ten"}, "not a valid action"),
        ({"action": "stop", "instances": []}, "at least one"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_does_nothing(client, lab, instructor, body, error):
    client.force_login(instructor)
    response = act(client, lab, **body)
    assert response.status_code == 400 and error in response.json()["error"]
    assert not ClassAction.objects.exists()


def test_an_instance_of_another_lab_cannot_be_acted_on(
    client, lab, student, instructor, other_instructor, make_instance
):
    foreign_lab = Lab.objects.create(
        name="Olga's", slug="olgas", namespace_prefix="olgas", owner=other_instructor
    )
    foreign = make_instance(owner=student, lab=foreign_lab)
    mine = make_instance(owner=student, lab=lab)
    client.force_login(instructor)
    response = act(client, lab, action="extend", instances=[mine.pk, foreign.pk], minutes=5)
    assert response.status_code == 400
    assert not ClassAction.objects.exists()
    foreign.refresh_from_db()
    mine.refresh_from_db()
    assert not StudentMessage.objects.exists()


def test_a_message_shows_on_the_students_banner_only(
    client, lab, student, other_student, instructor, make_instance
):
    instance = make_instance(owner=student, lab=lab)
    other = make_instance(owner=other_student, lab=lab)
    client.force_login(instructor)
    act(client, lab, action="message", instances=[instance.pk], text="Look at <b>step 2</b>")
    client.force_login(student)
    notices = client.get(reverse("classroom:student-notices", args=[instance.pk])).json()
    assert [(m["from"], m["text"]) for m in notices["messages"]] == [("ines", "Look at <b>step 2</b>")]
    client.force_login(other_student)
    assert client.get(reverse("classroom:student-notices", args=[other.pk])).json()["messages"] == []
    assert client.get(reverse("classroom:student-notices", args=[instance.pk])).status_code == 404


def test_the_student_reports_their_page_for_their_own_instance_only(
    client, lab, tutorial, student, other_student, make_instance
):
    instance = make_instance(owner=student, lab=lab)
    page = tutorial.pages.order_by("order").last()
    url = reverse("classroom:student-position", args=[instance.pk])
    body = json.dumps({"tutorial": tutorial.slug, "page": page.pk})
    client.force_login(other_student)
    assert client.post(url, data=body, content_type="application/json").status_code == 404
    client.force_login(student)
    assert client.post(url, data="nonsense", content_type="application/json").status_code == 400
    assert client.post(url, data=body, content_type="application/json").status_code == 204
    instance.tutorial_position.refresh_from_db()
    assert instance.tutorial_position.page == page


def test_the_read_only_tutorial_shows_the_students_ticks(
    client, lab, tutorial, steps, student, instructor, make_instance
):
    from tutorials.models import StepCompletion

    instance = make_instance(owner=student, lab=lab)
    StepCompletion.objects.create(user=student, step=steps[0])
    client.force_login(instructor)
    page = client.get(reverse("classroom:student-tutorial", args=[instance.pk])).content.decode()
    assert page.count("disabled checked") == 1
    assert "Find the address of" in page and "<form" not in page.split("<main", 1)[1]
