"""Cloud-init user data that a start could not use is refused when the lab is saved, through the
API and the admin, with the reason; rows saved before the rule still fail a start with a 409, never
a 500."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.cache import cache
from django.test import Client

from labs import manifests
from labs.models import Lab, LabInstance, LabMachine
from tests.api.conftest import bearer
from tests.labs.test_admin import lab_form

pytestmark = pytest.mark.django_db

NESTED_THOUSANDS_DEEP = "a: " + "[" * 5000 + "]" * 5000 + "\n"

BROKEN = {
    "not YAML": ("packages: [nginx\nruncmd: ]\n", "not valid YAML"),
    "python tag": ("runcmd: !!python/object/apply:os.system ['reboot']\n", "not valid YAML"),
    "custom tag": ("x: !shell reboot\n", "not valid YAML"),
    "nested thousands deep": (NESTED_THOUSANDS_DEEP, "nested more than 32 levels"),
    "nested a little too deep": ("a: " + "{b: " * 33 + "c" + "}" * 33 + "\n", "nested more than 32 levels"),
    "aliases": ("base: &b {packages: [nginx]}\nother: *b\n", "aliases"),
    "a list": ("- not\n- a mapping\n", "mapping"),
    "two documents": ("a: 1\n---\nb: 2\n", "not valid YAML"),
    "too large": ("runcmd:\n" + "  - echo hello\n" * 6000, "the limit is 65536 bytes"),
}


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Start throttle counters live in the cache; these tests spend none of another test's."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(instructor) -> Client:
    client = Client(raise_request_exception=False)
    client.defaults["HTTP_AUTHORIZATION"] = bearer(instructor)
    return client


@pytest.mark.parametrize("case", BROKEN)
def test_the_api_refuses_user_data_a_start_could_not_use(staff, make_lab, image, case):
    text, reason = BROKEN[case]
    lab = make_lab(machines=0)
    body = {"name": "web", "image": image.pk, "cores": 1, "memory_mib": 256, "cloud_init_user_data": text}

    response = staff.post(
        f"/api/labs/{lab.slug}/machines/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 400, response.content[:500]
    errors = response.json()["cloud_init_user_data"]
    assert "not usable cloud-init user data" in errors[0]
    assert reason in errors[0]
    assert not LabMachine.objects.filter(lab=lab).exists()


def test_the_api_refuses_it_on_an_update_too_and_keeps_the_old_text(staff, make_lab):
    lab = make_lab(machines=1)
    LabMachine.objects.filter(lab=lab).update(cloud_init_user_data="packages: [nginx]\n")

    response = staff.patch(
        f"/api/labs/{lab.slug}/machines/vm0/",
        json.dumps({"cloud_init_user_data": NESTED_THOUSANDS_DEEP}),
        content_type="application/json",
    )

    assert response.status_code == 400
    assert lab.machines.get().cloud_init_user_data == "packages: [nginx]\n"


@pytest.mark.parametrize("case", ["python tag", "nested thousands deep", "not YAML"])
def test_the_admin_refuses_it_with_the_reason(client, instructor, image, case):
    text, reason = BROKEN[case]
    client.force_login(instructor)

    response = client.post(
        "/admin/labs/lab/add/", lab_form(image, [{"name": "web", "cloud_init_user_data": text}])
    )

    assert response.status_code == 200
    assert "not usable cloud-init user data" in response.content.decode()
    assert reason in response.content.decode()
    assert not Lab.objects.exists()


def test_good_user_data_is_saved_and_starts_as_written(staff, make_lab, image):
    text = "#cloud-config\npackages: [nginx]\nwrite_files:\n  - path: /etc/motd\n    content: hello\n"
    lab = make_lab(machines=0)
    body = {"name": "web", "image": image.pk, "cores": 1, "memory_mib": 256, "cloud_init_user_data": text}

    response = staff.post(
        f"/api/labs/{lab.slug}/machines/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 201, response.content
    config = yaml.safe_load(manifests.cloud_init_user_data(password="pw", extra_user_data=text))
    assert config["packages"] == ["nginx"]
    assert config["write_files"] == [{"path": "/etc/motd", "content": "hello"}]


@pytest.mark.parametrize("case", ["python tag", "nested thousands deep", "aliases"])
def test_a_row_saved_before_the_rule_fails_the_start_with_a_409(student, instructor, make_lab, case):
    text, reason = BROKEN[case]
    lab = make_lab(machines=1)
    LabMachine.objects.filter(lab=lab).update(cloud_init_user_data=text)  # behind the validators' back
    answers = {}
    for who, user in (("student", student), ("staff", instructor)):
        client = Client(raise_request_exception=False)
        client.defaults["HTTP_AUTHORIZATION"] = bearer(user)
        answers[who] = client.post(
            "/api/instances/", json.dumps({"lab": lab.slug}), content_type="application/json"
        )

    for response in answers.values():
        assert response.status_code == 409, response.content[:300]
        assert response.json()["code"] == "lab_not_available"
    # Plain words for the student, the exact reason for staff.
    assert "not set up correctly" in answers["student"].json()["detail"]
    assert reason in answers["staff"].json()["detail"]
    assert not LabInstance.objects.exists()
