"""Instructors author labs in the Django admin: a two-machine lab, with its rules enforced."""

import pytest

from labs.models import Lab, LabInstance, VMImage

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    return VMImage.objects.create(
        name="Demo", container_disk_image="localcluster/demo:latest", default_username="lab"
    )


def lab_form(image, machines, **fields):
    data = {
        "name": "Networking 101",
        "slug": "net-101",
        "description": "Ping your neighbour.",
        "published": "on",
        "instances_per_user": "1",
        "lifetime_minutes": "120",
        "idle_timeout_minutes": "30",
        "namespace_prefix": "net101",
        "machines-TOTAL_FORMS": str(len(machines)),
        "machines-INITIAL_FORMS": "0",
        "machines-MIN_NUM_FORMS": "0",
        "machines-MAX_NUM_FORMS": "1000",
        "ready_instances": "0",
        "ready_schedules-TOTAL_FORMS": "0",
        "ready_schedules-INITIAL_FORMS": "0",
    }
    for index, machine in enumerate(machines):
        defaults = {
            "order": str(index),
            "kind": "vm",
            "image": str(image.pk),
            "cores": "1",
            "memory_mib": "256",
        }
        for key, value in {**defaults, **machine}.items():
            data[f"machines-{index}-{key}"] = value
    data.update(fields)
    return data


def test_instructor_authors_a_two_machine_lab(client, instructor, image):
    client.force_login(instructor)
    response = client.post(
        "/admin/labs/lab/add/",
        lab_form(image, [{"name": "client", "opens_first": "on"}, {"name": "server", "memory_mib": "512"}]),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    lab = Lab.objects.get(slug="net-101")
    assert [(m.name, m.memory_mib, m.opens_first) for m in lab.machines.all()] == [
        ("client", 256, True),
        ("server", 512, False),
    ]
    assert client.get("/admin/labs/lab/").status_code == 200
    assert b"net-101" in client.get("/admin/labs/lab/").content


@pytest.mark.parametrize(
    ("machines", "fields", "message"),
    [
        ([{"name": "Bad_Name"}], {}, "RFC 1123 DNS label"),
        ([{"name": "a", "opens_first": "on"}, {"name": "b", "opens_first": "on"}], {}, "Only one machine"),
        ([{"name": "a"}, {"name": "a"}], {}, "duplicate data for name"),
        ([], {}, "at least one machine"),
        ([{"name": "a"}], {"namespace_prefix": "Not_Valid"}, "namespace prefix"),
        ([{"name": "a"}], {"slug": "has spaces"}, "slug"),
    ],
)
def test_invalid_labs_are_refused_with_the_rule_and_nothing_saved(
    client, instructor, image, machines, fields, message
):
    client.force_login(instructor)
    response = client.post("/admin/labs/lab/add/", lab_form(image, machines, **fields))
    assert response.status_code == 200
    assert message.lower() in response.content.decode().lower()
    assert not Lab.objects.exists()


def test_students_cannot_use_the_admin(client, student):
    client.force_login(student)
    response = client.get("/admin/labs/lab/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_instances_are_listed_read_only(client, instructor, student, image):
    lab = Lab.objects.create(name="L", slug="l", namespace_prefix="l")
    instance = LabInstance.objects.create(
        lab=lab, owner=student, status="failed", last_error="quota exceeded"
    )
    client.force_login(instructor)
    listing = client.get("/admin/labs/labinstance/").content.decode()
    assert "alice" in listing and "quota exceeded" in listing
    detail = client.get(f"/admin/labs/labinstance/{instance.pk}/change/")
    assert detail.status_code == 200
    assert client.post(f"/admin/labs/labinstance/{instance.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LabInstance.objects.filter(pk=instance.pk).exists()


def test_the_namespace_prefix_help_text_shows_the_name_pattern(client, instructor):
    # Angle brackets in a help text are HTML to the admin: "<prefix>-<instance id>" once vanished.
    client.force_login(instructor)
    page = client.get("/admin/labs/lab/add/").content.decode()
    help_text = page.split('id="id_namespace_prefix_helptext"', 1)[1].split("</div>", 1)[0]
    assert "PREFIX-ID" in help_text and "e.g. networking-42" in help_text


def test_the_admin_shows_the_clusters_exact_reason_and_what_the_student_read(
    app_cluster, client, instructor, student, make_lab
):
    """Started for real: a node too small for the machine, as the instructor then sees it."""
    from labs import lifecycle
    from tests.labs.conftest import wait_for

    lab = make_lab()
    lab.machines.update(memory_mib=4096)
    app_cluster.faults.node(memory="1Gi")
    instance = lifecycle.instance_start(user=student, lab=lab)
    wait_for(lambda: lifecycle.instance_refresh(instance=instance).status == "failed")

    client.force_login(instructor)
    detail = client.get(f"/admin/labs/labinstance/{instance.pk}/change/").content.decode()
    assert "Last error:" in detail
    assert "Machine vm0: Unschedulable: 0/1 nodes are available: 1 Insufficient memory." in detail
    assert "Last error (plain words):" in detail
    assert "the cluster has no room for it right now" in detail
    listing = client.get("/admin/labs/labinstance/").content.decode()
    assert "Machine vm0: Unschedulable: 0/1 nodes are available" in listing


def test_instructor_adds_a_container_machine_beside_a_vm(client, instructor, image):
    client.force_login(instructor)
    container = {
        "name": "tools",
        "kind": "container",
        "image": "",
        "container_image": "registry.example:5000/labs/tools:1",
        "command": '["sleep", "infinity"]',
        "env": '{"GREETING": "hello"}',
        "ports": "[8080]",
        "shell_user": "1000",
        "memory_mib": "64",
    }
    response = client.post("/admin/labs/lab/add/", lab_form(image, [{"name": "vm"}, container]))
    assert response.status_code == 302, response.content.decode()[:2000]
    tools = Lab.objects.get(slug="net-101").machines.get(name="tools")
    assert (tools.kind, tools.image, tools.command, tools.env, tools.ports) == (
        "container",
        None,
        ["sleep", "infinity"],
        {"GREETING": "hello"},
        [8080],
    )
    no_image = {**container, "name": "bad", "container_image": ""}
    response = client.post("/admin/labs/lab/add/", lab_form(image, [no_image], slug="net-102"))
    assert response.status_code == 200
    assert "A container machine needs a container image." in response.content.decode()
