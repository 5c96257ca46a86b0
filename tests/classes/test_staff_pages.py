"""Instructors manage their own classes (superusers all of them); students manage none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from classes.models import Classroom

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_instructor_creates_a_class_and_sees_its_link(instructor, lab):
    client = signed_in(instructor)
    expires = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/classes/new/", {"name": "Intro", "labs": [lab.pk], "code_expires_at": expires, "code_max_uses": 30}
    )
    classroom = Classroom.objects.get(name="Intro")
    assert response["Location"] == f"/classes/{classroom.pk}/"
    assert classroom.owner == instructor and list(classroom.labs.all()) == [lab]
    page = client.get(response["Location"]).content.decode()
    assert f"http://testserver/classes/join/{classroom.access_code}/" in page
    assert "0 of 30" in page


def test_unpublished_labs_cannot_be_offered(instructor, lab):
    lab.published = False
    lab.save()
    expires = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = signed_in(instructor).post(
        "/classes/new/", {"name": "Intro", "labs": [lab.pk], "code_expires_at": expires, "code_max_uses": 30}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Classroom.objects.exists()


def test_instructors_see_only_their_own_classes(classroom, other_instructor):
    client = signed_in(other_instructor)
    assert "Networks 101" not in client.get("/classes/").content.decode()
    for path in (f"/classes/{classroom.pk}/",):
        assert client.get(path).status_code == 404
    assert client.post(f"/classes/{classroom.pk}/new-code/").status_code == 404
    assert client.post(f"/classes/{classroom.pk}/import/").status_code == 404
    old = classroom.access_code
    classroom.refresh_from_db()
    assert classroom.access_code == old


def test_superusers_see_every_class(classroom, superuser):
    client = signed_in(superuser)
    assert "Networks 101" in client.get("/classes/").content.decode()
    assert client.get(f"/classes/{classroom.pk}/").status_code == 200


def test_students_are_refused(classroom, student):
    client = signed_in(student)
    assert client.get("/classes/").status_code == 403
    assert client.get("/classes/new/").status_code == 403
    assert client.post(f"/classes/{classroom.pk}/import/").status_code == 403


def test_max_uses_cannot_go_below_the_sign_ups(client, instructor, classroom):
    Classroom.objects.filter(pk=classroom.pk).update(code_uses=2)
    client.force_login(instructor)
    data = {
        "name": classroom.name,
        "labs": [],
        "code_expires_at": classroom.code_expires_at.strftime("%Y-%m-%dT%H:%M"),
        "code_max_uses": 1,
    }
    response = client.post(f"/classes/{classroom.pk}/", data)
    assert response.status_code == 400
    assert "2 students have already joined" in response.content.decode()


def test_the_catalog_filter_ignores_classes_the_student_is_not_in(client, student, classroom, other_lab):
    client.force_login(student)
    page = client.get(f"/?class={classroom.pk}").content.decode()
    assert "Labs of" not in page and "Routing" in page  # not a member: the whole catalog
    assert client.get("/?class=%C2%B2").status_code == 200
