"""Labs, machines and images over the API: what students see, and the rules instructors are told."""

import pytest

from labs.models import LabMachine, VMImage
from tutorials.models import Tutorial

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(make_lab, image):
    lab = make_lab(machines=1)
    LabMachine.objects.filter(lab=lab).update(cloud_init_user_data="#cloud-config\nanswer: 42\n")
    return lab


def test_students_see_machines_without_cloud_init_and_only_published_tutorials(
    lab, student, instructor, client_for
):
    Tutorial.objects.create(title="Shown", slug="shown", published=True).labs.add(lab)
    Tutorial.objects.create(title="Draft", slug="draft").labs.add(lab)

    mine = client_for(student).get(f"/api/labs/{lab.slug}/").json()
    staff = client_for(instructor).get(f"/api/labs/{lab.slug}/").json()

    assert [m["name"] for m in mine["machines"]] == ["vm0"]
    assert "cloud_init_user_data" not in mine["machines"][0]
    assert mine["machines"][0]["has_vnc"] is True
    assert [t["slug"] for t in mine["tutorials"]] == ["shown"]
    assert staff["machines"][0]["cloud_init_user_data"] == "#cloud-config\nanswer: 42\n"
    assert sorted(t["slug"] for t in staff["tutorials"]) == ["draft", "shown"]


def test_machine_rules_come_back_as_field_errors(lab, image, instructor, client_for):
    client = client_for(instructor)
    url = f"/api/labs/{lab.slug}/machines/"

    bad_name = client.post(url, {"name": "Web_1", "image": image.pk}, format="json")
    duplicate = client.post(url, {"name": "vm0", "image": image.pk}, format="json")
    too_small = client.post(url, {"name": "db", "image": image.pk, "memory_mib": 64}, format="json")
    good = client.post(url, {"name": "db", "image": image.pk, "memory_mib": 256, "cores": 2}, format="json")

    assert bad_name.status_code == 400 and list(bad_name.json()) == ["name"]
    assert duplicate.status_code == 400
    assert duplicate.json() == {"non_field_errors": ["A lab cannot have two machines with the same name."]}
    assert too_small.status_code == 400
    assert too_small.json() == {"memory_mib": [f"The image {image.name} needs at least 128 MiB."]}
    assert good.status_code == 201, good.content
    assert lab.machines.get(name="db").cores == 2


def test_lab_rules_come_back_as_field_errors(lab, instructor, client_for):
    client = client_for(instructor)

    response = client.post(
        "/api/labs/",
        {"name": "X", "slug": lab.slug, "namespace_prefix": "Bad_Prefix", "lifetime_minutes": 1},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.json()) == {"slug", "namespace_prefix", "lifetime_minutes"}
    assert (
        client.patch(f"/api/labs/{lab.slug}/", {"published": False}, format="json").json()["published"]
        is False
    )


def test_an_image_needs_a_console(instructor, client_for):
    response = client_for(instructor).post(
        "/api/images/",
        {"name": "Headless", "container_disk_image": "a/b:1", "default_username": "u", "has_vnc": False,
         "has_serial_console": False},
        format="json",
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["An image needs a graphical desktop, a serial console, or both."]
    }
    assert not VMImage.objects.filter(name="Headless").exists()


def test_a_lab_with_instances_cannot_be_deleted(lab, student, instructor, client_for, make_instance):
    make_instance(owner=student, lab=lab)

    response = client_for(instructor).delete(f"/api/labs/{lab.slug}/")

    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert response.json()["detail"].startswith("Still used by 1 object: ")


def test_lists_are_paginated(make_lab, student, client_for):
    for _ in range(3):
        make_lab()

    body = client_for(student).get("/api/labs/?page_size=2").json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"].endswith("page=2&page_size=2")


def test_staff_set_how_many_instances_a_lab_keeps_ready(client_for, instructor):
    client = client_for(instructor)
    created = client.post(
        "/api/labs/",
        {"name": "Pool", "slug": "pool", "namespace_prefix": "pool", "ready_instances": 5},
        format="json",
    )
    assert created.status_code == 201 and created.json()["ready_instances"] == 5
    too_many = client.patch("/api/labs/pool/", {"ready_instances": 1000}, format="json")
    assert too_many.status_code == 400 and "ready_instances" in too_many.json()
