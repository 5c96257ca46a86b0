"""Who may open which page: anonymous users sign in first, students see only their own instances."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from labs.models import LabInstance

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name, args", [("portal:catalog", []), ("portal:instance", [1])])
def test_anonymous_users_are_sent_to_sign_in(client, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_sign_in_page_signs_in_and_returns_to_the_catalog(client, student):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_says_so(client, student):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_sign_out_is_a_form_in_the_header(client, student):
    client.force_login(student)
    page = client.get("/")
    assert f'action="{reverse("logout")}"'.encode() in page.content
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/").status_code == 302


def test_own_instance_page_renders_with_its_machines(client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    response = client.get(reverse("portal:instance", args=[instance.pk]))
    assert response.status_code == 200
    config = response.context["config"]
    assert config["instanceId"] == instance.pk
    assert [m["name"] for m in config["machines"]] == ["alpha", "beta"]
    assert config["tutorials"] == [{"slug": "networking", "title": "Networking basics"}]
    assert config["urls"]["instance"] == f"/api/instances/{instance.pk}/"
    # The page script reads the same data from the page.
    assert json.dumps(config["urls"]["instance"]).encode() in response.content
    # beta opens first, as the lab says.
    assert response.context["first_machine"].name == "beta"
    page = " ".join(response.content.decode().split())
    assert '<div class="machine-panel" role="tabpanel" id="panel-alpha"' in page
    assert 'aria-labelledby="tab-alpha" hidden>' in page


def test_passwords_are_not_in_the_page_only_behind_the_api(client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    response = client.get(reverse("portal:instance", args=[instance.pk]))
    for machine in instance.machines.all():
        assert machine.password.encode() not in response.content


@pytest.mark.parametrize("name", ["portal:instance", "portal:embed-instance"])
def test_another_students_instance_is_not_found(client, student, other_student, lab, make_instance, name):
    instance = make_instance(owner=other_student, lab=lab)
    client.force_login(student)
    assert client.get(reverse(name, args=[instance.pk])).status_code == 404


def test_instructors_open_any_instance(client, instructor, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    client.force_login(instructor)
    response = client.get(reverse("portal:instance", args=[instance.pk]))
    assert response.status_code == 200
    assert b"alice's lab" in response.content


def test_stopped_instances_still_have_a_page(client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    client.force_login(student)
    assert client.get(reverse("portal:instance", args=[instance.pk])).status_code == 200
