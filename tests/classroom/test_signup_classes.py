"""The class view of a sign-up class (classes app): its owner sees its members' instances of its
labs, acts only on those, and may read their tutorials; other instructors and students get 404."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classes.models import ClassMembership, Classroom
from classroom.models import ClassAction
from labs.models import Lab

pytestmark = pytest.mark.django_db


@pytest.fixture
def teacher(django_user_model):
    return django_user_model.objects.create_user(username="tom", password="pw-tom-1", is_staff=True)


@pytest.fixture
def classroom(lab, teacher, student):
    """Tom's class offers Ines's lab; alice joined it, bob did not."""
    classroom = Classroom.objects.create(
        name="Networks 101", owner=teacher, code_expires_at=timezone.now() + timedelta(days=1)
    )
    classroom.labs.add(lab)
    ClassMembership.objects.create(classroom=classroom, user=student, source="code")
    return classroom


def test_the_class_owner_sees_its_members_only(
    client, classroom, lab, teacher, student, other_student, make_instance
):
    make_instance(owner=student, lab=lab)
    make_instance(owner=other_student, lab=lab)
    client.force_login(teacher)
    assert client.get(reverse("classroom:class", args=[classroom.pk])).status_code == 200
    state = client.get(reverse("classroom:class-state", args=[classroom.pk])).json()
    assert [row["student"] for row in state["rows"]] == ["alice"]
    assert "Networks 101" in client.get(reverse("classroom:index")).content.decode()
    # Tom does not own the lab: its own class view stays Ines's.
    assert client.get(reverse("classroom:lab", args=[lab.slug])).status_code == 404


def test_actions_reach_members_only(client, classroom, lab, teacher, student, other_student, make_instance):
    member = make_instance(owner=student, lab=lab)
    outsider = make_instance(owner=other_student, lab=lab)
    client.force_login(teacher)
    url = reverse("classroom:class-actions", args=[classroom.pk])
    body = {"action": "message", "instances": [member.pk, outsider.pk], "text": "hello"}
    assert client.post(url, data=json.dumps(body), content_type="application/json").status_code == 400
    body["instances"] = [member.pk]
    assert client.post(url, data=json.dumps(body), content_type="application/json").status_code == 200
    assert list(ClassAction.objects.values_list("instance_id", flat=True)) == [member.pk]
    tutorial = reverse("classroom:student-tutorial", args=[member.pk])
    assert client.get(tutorial).status_code == 200
    assert client.get(reverse("classroom:student-tutorial", args=[outsider.pk])).status_code == 404


def test_other_instructors_and_students_get_404(client, classroom, other_instructor, student):
    for user in (other_instructor, student):
        client.force_login(user)
        for name in ("classroom:class", "classroom:class-state", "classroom:class-export"):
            assert client.get(reverse(name, args=[classroom.pk])).status_code == 404, (user, name)


def test_a_class_of_another_lab_does_not_open_this_labs_instances(
    client, classroom, teacher, student, make_instance
):
    other_lab = Lab.objects.create(name="Other", slug="other", namespace_prefix="other")
    instance = make_instance(owner=student, lab=other_lab)  # alice is a member, but not of this lab's class
    client.force_login(teacher)
    assert client.get(reverse("classroom:student-tutorial", args=[instance.pk])).status_code == 404
