"""Who may do what: every endpoint and method, for anonymous, student A, student B and staff.

A owns the instances and the ticks; B is another student, who must never learn that A's things
exist (404, not 403); staff are instructors. No cluster is needed: the instances are recorded in
the database in states where no action reaches the cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from labs.models import Lab, LabInstance, LabMachine, VMImage
from tutorials.models import Step, StepCheck, StepCompletion, Tutorial, TutorialMedia, TutorialPage
from vncproxy.models import ConsoleTicket

pytestmark = pytest.mark.django_db
Status = LabInstance.Status
ROLES = ("anonymous", "student_a", "student_b", "staff")


@dataclass(frozen=True)
class Case:
    method: str
    url: str  # formatted with the world's ids
    expected: tuple[int, int, int, int]  # anonymous, A, B, staff
    data: dict[str, Any] | None = None
    format: str = "json"

    @property
    def id(self) -> str:
        return f"{self.method} {self.url}"


@dataclass(frozen=True)
class Upload:
    """A file sent as multipart form data, made anew for every request (a file is read only once)."""

    name: str
    content: bytes


NEW_IMAGE = {"name": "New", "container_disk_image": "a/b:1", "default_username": "u"}
PUB_LAB = {"name": "Pub", "slug": "pub", "namespace_prefix": "pub"}
STEP = {"page": "{page}", "text_markdown": "y"}
CHECK = {"instance": "{stopped}"}
TRY = {**CHECK, "trial": True}
NEW_MEDIA = {"title": "Notes", "file": Upload("notes.txt", b"Hello")}
NOT_A_ZIP = Upload("lab.zip", b"no")
CASES = [
    Case("get", "/api/me/", (401, 200, 200, 200)),
    Case("get", "/api/images/", (401, 200, 200, 200)),
    Case("post", "/api/images/", (401, 403, 403, 201), NEW_IMAGE),
    Case("get", "/api/images/{image}/", (401, 200, 200, 200)),
    Case("put", "/api/images/{image}/", (401, 403, 403, 200), {**NEW_IMAGE, "name": "Renamed"}),
    Case("patch", "/api/images/{image}/", (401, 403, 403, 200), {"description": "x"}),
    Case("delete", "/api/images/{spare_image}/", (401, 403, 403, 204)),
    Case("get", "/api/labs/", (401, 200, 200, 200)),
    Case("get", "/api/labs/pub/", (401, 200, 200, 200)),
    Case("get", "/api/labs/hidden/", (401, 404, 404, 200)),
    Case("post", "/api/labs/", (401, 403, 403, 201), {"name": "L", "slug": "l", "namespace_prefix": "l"}),
    Case("patch", "/api/labs/pub/", (401, 403, 403, 200), {"description": "x"}),
    Case("put", "/api/labs/pub/", (401, 403, 403, 200), PUB_LAB),
    Case("delete", "/api/labs/empty/", (401, 403, 403, 204)),
    Case("get", "/api/labs/pub/machines/", (401, 200, 200, 200)),
    Case("get", "/api/labs/hidden/machines/", (401, 404, 404, 200)),
    Case("get", "/api/labs/pub/machines/vm0/", (401, 200, 200, 200)),
    Case("post", "/api/labs/pub/machines/", (401, 403, 403, 201), {"name": "vm9", "image": "{image}"}),
    Case("patch", "/api/labs/pub/machines/vm0/", (401, 403, 403, 200), {"cores": 2}),
    Case("put", "/api/labs/pub/machines/vm0/", (401, 403, 403, 200), {"name": "vm0", "image": "{image}"}),
    Case("delete", "/api/labs/pub/machines/vm0/", (401, 403, 403, 204)),
    Case("get", "/api/labs/pub/progress/", (401, 403, 403, 200)),
    Case("get", "/api/instances/", (401, 200, 200, 200)),
    Case("post", "/api/instances/", (401, 409, 409, 409), {"lab": "empty"}),
    Case("post", "/api/instances/", (401, 400, 400, 409), {"lab": "hidden-empty"}),
    Case("get", "/api/instances/{stopped}/", (401, 200, 404, 200)),
    Case("patch", "/api/instances/{stopped}/", (401, 405, 405, 405), {"status": "running"}),
    Case("delete", "/api/instances/{stopped}/", (401, 200, 404, 200)),
    Case("post", "/api/instances/{stopped}/pause/", (401, 409, 404, 409)),
    Case("post", "/api/instances/{stopped}/resume/", (401, 409, 404, 409)),
    Case("post", "/api/instances/{stopped}/refresh/", (401, 200, 404, 200)),
    Case("post", "/api/instances/{running}/machines/vm0/ticket/", (401, 201, 404, 201), {"kind": "vnc"}),
    Case("get", "/api/tutorials/", (401, 200, 200, 200)),
    Case("get", "/api/tutorials/tut/", (401, 200, 200, 200)),
    Case("get", "/api/tutorials/draft/", (401, 404, 404, 200)),
    Case("post", "/api/tutorials/", (401, 403, 403, 201), {"title": "T", "slug": "t"}),
    Case("patch", "/api/tutorials/tut/", (401, 403, 403, 200), {"summary": "x"}),
    Case("put", "/api/tutorials/tut/", (401, 403, 403, 200), {"title": "Tut", "slug": "tut"}),
    Case("delete", "/api/tutorials/tut/", (401, 403, 403, 204)),
    Case("get", "/api/tutorials/tut/pages/", (401, 200, 200, 200)),
    Case("post", "/api/tutorials/tut/pages/", (401, 403, 403, 201), {"title": "P", "body_markdown": "x"}),
    Case("patch", "/api/tutorials/tut/pages/{page}/", (401, 403, 403, 200), {"title": "Q"}),
    Case("get", "/api/tutorials/tut/pages/{page}/", (401, 200, 200, 200)),
    Case("put", "/api/tutorials/tut/pages/{page}/", (401, 403, 403, 200), {"title": "Q"}),
    Case("delete", "/api/tutorials/tut/pages/{page}/", (401, 403, 403, 204)),
    Case("get", "/api/tutorials/tut/steps/", (401, 200, 200, 200)),
    Case("post", "/api/tutorials/tut/steps/", (401, 403, 403, 201), {"page": "{page}", "text_markdown": "x"}),
    Case("delete", "/api/tutorials/tut/steps/{step}/", (401, 403, 403, 204)),
    Case("get", "/api/tutorials/tut/steps/{step}/", (401, 200, 200, 200)),
    Case("get", "/api/tutorials/draft/steps/{draft_step}/", (401, 404, 404, 200)),
    Case("patch", "/api/tutorials/tut/steps/{step}/", (401, 403, 403, 200), {"order": 3}),
    Case("put", "/api/tutorials/tut/steps/{step}/", (401, 403, 403, 200), STEP),
    Case("get", "/api/tutorials/draft/steps/", (401, 404, 404, 200)),
    Case("post", "/api/tutorials/tut/steps/{step}/tick/", (401, 200, 200, 200)),
    Case("delete", "/api/tutorials/tut/steps/{step}/tick/", (401, 200, 200, 200)),
    Case("post", "/api/tutorials/draft/steps/{draft_step}/tick/", (401, 404, 404, 200)),
    # A's stopped instance: A is told the machine is not running (200), B cannot see it, staff may
    # only try checks on instances they started themselves (and a step without a check is a 400).
    Case("post", "/api/tutorials/tut/steps/{checked_step}/check/", (401, 200, 404, 400), CHECK),
    Case("post", "/api/tutorials/tut/steps/{checked_step}/check/", (401, 400, 404, 400), TRY),
    Case("post", "/api/tutorials/tut/steps/{step}/check/", (401, 400, 404, 400), CHECK),
    Case("post", "/api/tutorials/draft/steps/{draft_step}/check/", (401, 404, 404, 400), CHECK),
    Case("get", "/api/tutorials/tut/progress/", (401, 200, 200, 200)),
    Case("get", "/api/tutorials/tut/progress/?user={student_a}", (401, 200, 403, 200)),
    Case("get", "/api/media/", (401, 403, 403, 200)),
    Case("post", "/api/media/", (401, 403, 403, 201), NEW_MEDIA, format="multipart"),
    Case("get", "/api/lab-files/pub/", (401, 403, 403, 200)),
    Case("get", "/api/lab-files/hidden/", (401, 403, 403, 200)),
    # Not a zip: staff get the 400 that says so; nobody else gets that far.
    Case("post", "/api/lab-files/", (401, 403, 403, 400), {"file": NOT_A_ZIP}, format="multipart"),
    Case("get", "/api/media/{media}/", (401, 403, 403, 200)),
    Case("patch", "/api/media/{media}/", (401, 403, 403, 200), {"title": "Renamed"}),
    Case("put", "/api/media/{media}/", (401, 403, 403, 405), {"title": "Renamed"}),
    Case("delete", "/api/media/{spare_media}/", (401, 403, 403, 204)),
    Case("get", "/api/schema/", (200, 200, 200, 200)),
    Case("get", "/api/docs/", (200, 200, 200, 200)),
]  # fmt: skip


@pytest.fixture
def world(student, other_student, instructor, make_instance, media_root) -> dict[str, Any]:
    image = VMImage.objects.create(
        name="Cirros", container_disk_image="a/cirros:1", default_username="cirros", has_ssh_server=True
    )
    spare_image = VMImage.objects.create(name="Spare", container_disk_image="a/spare:1", default_username="u")
    pub = Lab.objects.create(name="Pub", slug="pub", namespace_prefix="pub", published=True)
    LabMachine.objects.create(lab=pub, name="vm0", image=image)
    Lab.objects.create(name="Hidden", slug="hidden", namespace_prefix="hidden")
    Lab.objects.create(name="Hidden empty", slug="hidden-empty", namespace_prefix="he")
    Lab.objects.create(name="Empty", slug="empty", namespace_prefix="empty", published=True)
    tutorial = Tutorial.objects.create(title="Tut", slug="tut", published=True)
    tutorial.labs.add(pub)
    page = TutorialPage.objects.create(tutorial=tutorial, title="Page")
    step = Step.objects.create(page=page, text_markdown="Step")
    checked_step = Step.objects.create(page=page, text_markdown="Checked", order=1)
    StepCheck.objects.create(step=checked_step, machine="vm0", script="exit 0")
    draft = Tutorial.objects.create(title="Draft", slug="draft")
    draft_step = Step.objects.create(
        page=TutorialPage.objects.create(tutorial=draft, title="P"), text_markdown="S"
    )
    media, spare_media = (
        TutorialMedia.objects.create(title=name, file=SimpleUploadedFile(f"{name}.txt", b"Hi"))
        for name in ("media", "spare")
    )
    return {
        "users": {"anonymous": None, "student_a": student, "student_b": other_student, "staff": instructor},
        "image": image.pk,
        "spare_image": spare_image.pk,
        "page": page.pk,
        "step": step.pk,
        "checked_step": checked_step.pk,
        "draft_step": draft_step.pk,
        "media": media.pk,
        "spare_media": spare_media.pk,
        "student_a": student.pk,
        "stopped": make_instance(owner=student, lab=pub, status=Status.STOPPED).pk,
        "running": make_instance(owner=student, lab=pub, status=Status.RUNNING).pk,
    }


def fill(value: Any, world: dict[str, Any]) -> Any:
    if isinstance(value, Upload):
        return SimpleUploadedFile(value.name, value.content)
    if isinstance(value, str):
        filled = value.format(**world)
        return int(filled) if filled.isdigit() and value != filled else filled
    if isinstance(value, dict):
        return {key: fill(item, world) for key, item in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_status_codes(case: Case, role: str, world, client_for):
    client = client_for(world["users"][role])
    url = case.url.format(**world)
    data = fill(case.data, world) if case.data is not None else None

    response = getattr(client, case.method)(url, data, format=case.format)

    assert response.status_code == case.expected[ROLES.index(role)], response.content


def test_every_endpoint_and_method_of_the_schema_is_in_the_matrix():
    """Adding an endpoint without deciding who may use it fails here."""
    schema = SchemaGenerator().get_schema(request=None, public=True)

    def route(url: str) -> str:
        return resolve(url.split("?")[0]).route

    documented = {
        (method, route(re.sub(r"\{[^}]+\}", "1", path)))
        for path, operations in schema["paths"].items()
        for method in operations
        if not path.startswith("/api/auth/")
    }
    in_matrix = {(case.method, route(case.url)) for case in CASES}
    assert documented - in_matrix == set()


# --- What B never sees of A's -------------------------------------------------------------------------


def test_b_never_sees_a_instances_or_credentials(world, client_for, student, other_student, instructor):
    stopped, running = world["stopped"], world["running"]
    a, b, staff = client_for(student), client_for(other_student), client_for(instructor)

    assert b.get("/api/instances/").json()["results"] == []
    assert {i["id"] for i in a.get("/api/instances/").json()["results"]} == {stopped, running}
    assert b.get(f"/api/instances/{stopped}/").json() == b.get("/api/instances/999999/").json()
    password = LabInstance.objects.get(pk=stopped).machines.get().password
    assert a.get(f"/api/instances/{stopped}/").json()["machines"][0]["password"] == password
    assert staff.get(f"/api/instances/{stopped}/").json()["machines"][0]["password"] == password
    assert b.get(f"/api/instances/?user={student.pk}").json()["results"] == []


def test_b_gets_no_ticket_for_a_console(world, client_for, other_student):
    response = client_for(other_student).post(
        f"/api/instances/{world['running']}/machines/vm0/ticket/", {"kind": "serial"}, format="json"
    )

    assert response.status_code == 404
    assert not ConsoleTicket.objects.exists()


def test_b_never_sees_a_progress(world, client_for, student, other_student):
    StepCompletion.objects.create(user=student, step_id=world["step"])
    b = client_for(other_student)

    assert b.get("/api/tutorials/tut/progress/").json()["ticked_step_ids"] == []
    assert b.get("/api/tutorials/tut/").json()["progress"]["ticked"] == 0
    assert b.get("/api/tutorials/tut/steps/").json()[0]["ticked"] is False
    assert b.get(f"/api/tutorials/tut/progress/?user={student.pk}").status_code == 403
    assert b.get("/api/labs/pub/progress/").status_code == 403


def test_staff_filter_instances_by_user_lab_and_status(world, client_for, instructor, student, other_student):
    staff = client_for(instructor)

    def ids(query: str) -> set[int]:
        return {i["id"] for i in staff.get(f"/api/instances/?{query}").json()["results"]}

    assert ids(f"user={student.pk}") == {world["stopped"], world["running"]}
    assert ids(f"user={other_student.pk}") == set()
    assert ids("lab=pub&status=running") == {world["running"]}
    assert ids("status=stopped&status=failed") == {world["stopped"]}
    assert staff.get("/api/instances/?status=bogus").status_code == 400


def test_an_image_in_use_cannot_be_deleted(world, client_for, instructor):
    response = client_for(instructor).delete(f"/api/images/{world['image']}/")

    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert VMImage.objects.filter(pk=world["image"]).exists()
