"""Who may open a class view: the lab's owner and superusers; LTI instructors of a course for the
course's view. Students and other instructors get 404 everywhere, and learn nothing."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from classroom.models import ClassAction
from lti.models import ContextMembership, Platform, ResourceLink

pytestmark = pytest.mark.django_db


def lab_urls(lab, instance) -> list[tuple[str, str]]:
    return [
        ("get", reverse("classroom:lab", args=[lab.slug])),
        ("get", reverse("classroom:lab-state", args=[lab.slug])),
        ("get", reverse("classroom:lab-export", args=[lab.slug])),
        ("post", reverse("classroom:lab-actions", args=[lab.slug])),
        ("get", reverse("classroom:student-tutorial", args=[instance.pk])),
    ]


def call(client, method: str, url: str):
    if method == "post":
        body = '{"action": "message", "instances": [%d], "text": "hi"}'
        return client.post(url, data=body % 0, content_type="application/json")
    return client.get(url)


def test_the_owner_and_superusers_open_every_page(
    client, lab, tutorial, student, instructor, superuser, make_instance
):
    instance = make_instance(owner=student, lab=lab)
    for user in (instructor, superuser):
        client.force_login(user)
        for method, url in lab_urls(lab, instance):
            if method == "get":
                assert client.get(url).status_code == 200, (user, url)


def test_students_and_other_instructors_get_404(
    client, lab, tutorial, student, other_student, other_instructor, make_instance
):
    instance = make_instance(owner=student, lab=lab)
    for user in (student, other_student, other_instructor):
        client.force_login(user)
        for method, url in lab_urls(lab, instance):
            assert call(client, method, url).status_code == 404, (user, url)
        assert client.get(reverse("classroom:index")).status_code == 404
    assert not ClassAction.objects.exists()


def test_anonymous_users_are_sent_to_sign_in(client, lab, student, make_instance):
    instance = make_instance(owner=student, lab=lab)
    for method, url in lab_urls(lab, instance):
        response = call(client, method, url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_a_lab_without_owner_is_for_superusers_only(client, lab, instructor, superuser):
    lab.owner = None
    lab.save()
    client.force_login(instructor)
    assert client.get(reverse("classroom:lab", args=[lab.slug])).status_code == 404
    client.force_login(superuser)
    assert client.get(reverse("classroom:lab", args=[lab.slug])).status_code == 200


def test_the_index_lists_only_the_users_labs(client, lab, other_instructor, image):
    from labs.models import Lab

    Lab.objects.create(name="Olga's", slug="olgas", namespace_prefix="olgas", owner=other_instructor)
    client.force_login(other_instructor)
    page = client.get(reverse("classroom:index")).content.decode()
    assert "Olga&#x27;s" in page and "Networking" not in page


@pytest.fixture
def course(lab, student, other_student, django_user_model):
    platform = Platform.objects.create(
        name="Moodle", issuer="https://moodle.example.org", client_id="tool",
        auth_login_url="https://moodle.example.org/auth", auth_token_url="https://moodle.example.org/token",
        keyset_url="https://moodle.example.org/jwks",
    )  # fmt: skip
    teacher = django_user_model.objects.create_user(username="tina", password="pw-tina-1")  # not staff
    ContextMembership.objects.create(
        platform=platform, context_id="c1", context_title="Course 1", user=teacher, is_instructor=True
    )
    ContextMembership.objects.create(platform=platform, context_id="c1", user=student)
    ResourceLink.objects.create(platform=platform, resource_link_id="r1", context_id="c1", lab=lab)
    return platform, teacher


def test_lti_course_view_shows_its_learners_to_its_instructors(
    client, course, lab, tutorial, student, other_student, make_instance
):
    platform, teacher = course
    make_instance(owner=student, lab=lab)
    outsider = make_instance(owner=other_student, lab=lab)  # not in the course
    client.force_login(teacher)
    state = client.get(reverse("classroom:course-state", args=[platform.pk, "c1"])).json()
    assert [row["student"] for row in state["rows"]] == ["alice"]
    body = json.dumps({"action": "message", "instances": [outsider.pk], "text": "hi"})
    url = reverse("classroom:course-actions", args=[platform.pk, "c1"])
    assert client.post(url, data=body, content_type="application/json").status_code == 400
    assert not ClassAction.objects.exists()
    for user in (student, other_student):
        client.force_login(user)
        assert client.get(reverse("classroom:course", args=[platform.pk, "c1"])).status_code == 404


def test_a_lab_created_through_the_api_or_offered_in_the_admin_belongs_to_its_creator(client, instructor):
    from labs.models import Lab

    client.force_login(instructor)
    body = {"name": "New lab", "slug": "new-lab", "namespace_prefix": "new-lab"}
    response = client.post("/api/labs/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    assert Lab.objects.get(slug="new-lab").owner == instructor
    form = client.get(reverse("admin:labs_lab_add")).content.decode()
    assert f'<option value="{instructor.pk}" selected>' in form


def test_the_records_are_read_only_in_the_admin_and_for_superusers_only(client, superuser, instructor):
    for name in ("classroom_classaction", "classroom_studentmessage", "vncproxy_consolewatch"):
        client.force_login(superuser)
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
        assert client.get(reverse(f"admin:{name}_add")).status_code == 403
        client.force_login(instructor)
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 403
