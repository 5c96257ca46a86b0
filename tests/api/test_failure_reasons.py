"""Why a lab fails, over the API: staff get the cluster's exact reason, students plain words without
internal addresses or client library text; the same for every error body of start, stop, pause and
resume. Against the local cluster."""

from __future__ import annotations

import json
import uuid

import pytest

from labs.models import LabInstance, VMImage
from tests.labs.conftest import watched

pytestmark = pytest.mark.django_db
Status = LabInstance.Status
INTERNALS = ("127.0.0.1", "localhost", "HTTPSConnectionPool", "urllib3", "timed out", "rpc error", "HTTP 5")


def assert_plain(body: object) -> None:
    text = json.dumps(body)
    for internal in INTERNALS:
        assert internal not in text, f"{internal!r} reaches the student: {text}"


def start(client, lab) -> str:
    """Start the lab; the instance's URL."""
    started = client.post("/api/instances/", {"lab": lab.slug}, format="json")
    assert started.status_code == 201, started.content
    return f"/api/instances/{started.json()['id']}/"


@pytest.fixture
def missing_image_lab(app_cluster, make_lab, settings):
    settings.LABS_START_TIMEOUT_SECONDS = 3600
    lab = make_lab()
    reference = f"registry.example.org/labs/missing-{uuid.uuid4().hex[:8]}:1"
    image = VMImage.objects.create(name=reference, container_disk_image=reference, default_username="u")
    lab.machines.update(image=image)
    app_cluster.faults.missing_image(reference)
    return lab, reference


def test_an_unknown_image_is_explained_per_machine_and_in_last_error(
    cluster_watcher, missing_image_lab, student, instructor, client_for
):
    lab, reference = missing_image_lab
    student_client, staff_client = client_for(student), client_for(instructor)
    started = student_client.post("/api/instances/", {"lab": lab.slug}, format="json")
    assert started.status_code == 201, started.content
    url = f"/api/instances/{started.json()['id']}/"

    failed = watched(
        cluster_watcher, lambda: (body := student_client.get(url).json())["status"] == Status.FAILED and body
    )
    (machine,) = failed["machines"]
    assert machine["reason"] == "image_unavailable"
    assert machine["message"] == (
        "The machine vm0 cannot start: its disk image could not be downloaded. Tell your instructor."
    )
    assert failed["last_error"] == machine["message"]
    assert_plain(failed)
    (listed,) = student_client.get("/api/instances/").json()["results"]
    assert listed["last_error"] == failed["last_error"]

    as_staff = staff_client.get(url).json()
    assert as_staff["last_error"].startswith("Machine vm0: ")
    assert reference in as_staff["last_error"]
    assert "not found" in as_staff["last_error"] or "Back-off pulling image" in as_staff["last_error"]


def test_a_machine_waiting_for_quota_says_why_while_starting(
    cluster_watcher, app_cluster, make_lab, student, instructor, client_for, settings
):
    settings.KUBEVIRT_CPU_ALLOCATION_RATIO = "1000"  # the app believes launcher pods need far less CPU
    lab = make_lab()
    student_client = client_for(student)
    url = start(student_client, lab)

    waiting = watched(
        cluster_watcher, lambda: (body := student_client.get(url).json())["machines"][0]["reason"] and body
    )
    assert waiting["status"] == Status.STARTING
    assert waiting["machines"][0]["reason"] == "waiting_for_quota"
    assert "waiting for room" in waiting["machines"][0]["message"]
    assert waiting["last_error"] == ""
    assert_plain(waiting)
    as_staff = client_for(instructor).get(url).json()["machines"][0]
    assert as_staff["message"].startswith("Machine vm0: FailedCreate: failed to create virtual machine pod: ")
    assert "exceeded quota: lab-quota" in as_staff["message"]


def test_a_running_machine_has_no_reason(app_cluster, cluster_watcher, make_lab, student, client_for):
    client = client_for(student)
    url = start(client, make_lab())
    running = watched(
        cluster_watcher, lambda: (body := client.get(url).json())["status"] == Status.RUNNING and body
    )
    assert running["machines"][0]["reason"] == ""
    assert running["machines"][0]["message"] == ""


def test_a_start_that_times_out_answers_plain_words_to_students(
    app_cluster, make_lab, student, instructor, client_for, settings
):
    settings.KUBE_REQUEST_TIMEOUT = 0.5
    app_cluster.faults.hang("create", "virtualmachineinstances", seconds=3, times=None)

    refused = client_for(student).post("/api/instances/", {"lab": make_lab().slug}, format="json")
    assert refused.status_code == 503
    assert refused.json() == {
        "detail": "The lab service cannot reach the cluster right now. Try again in a minute.",
        "code": "cluster_unavailable",
    }
    (failed,) = client_for(student).get("/api/instances/").json()["results"]
    assert failed["status"] == Status.FAILED
    assert_plain(failed)

    as_staff = client_for(instructor).post("/api/instances/", {"lab": make_lab().slug}, format="json")
    assert as_staff.status_code == 503
    assert "Read timed out" in as_staff.json()["detail"]


@pytest.mark.parametrize(
    ("verb", "resource", "action"),
    [
        ("delete", "namespaces", "stop"),
        ("update", "virtualmachineinstances/pause", "pause"),
    ],
)
def test_stop_and_pause_errors_are_plain_for_students(
    cluster_watcher, app_cluster, make_lab, student, client_for, settings, verb, resource, action
):
    client = client_for(student)
    url = start(client, make_lab())
    watched(cluster_watcher, lambda: client.get(url).json()["status"] == Status.RUNNING)
    settings.KUBE_REQUEST_TIMEOUT = 0.5
    app_cluster.faults.hang(verb, resource, seconds=3, times=None)

    response = client.delete(url) if action == "stop" else client.post(f"{url}pause/")

    assert response.status_code == 503
    assert (
        response.json()["detail"]
        == "The lab service cannot reach the cluster right now. Try again in a minute."
    )


def test_resume_errors_are_plain_for_students_and_exact_for_staff(
    cluster_watcher, app_cluster, make_lab, student, instructor, client_for
):
    client = client_for(student)
    url = start(client, make_lab())
    watched(cluster_watcher, lambda: client.get(url).json()["status"] == Status.RUNNING)
    assert client.post(f"{url}pause/").status_code == 200
    app_cluster.faults.fail("update", "virtualmachineinstances/unpause", status=500, times=2)

    for_student = client.post(f"{url}resume/")
    for_staff = client_for(instructor).post(f"{url}resume/")

    assert for_student.status_code == for_staff.status_code == 503
    assert_plain(for_student.json())
    assert (
        "localcluster injected fault: update virtualmachineinstances/unpause answers 500"
        in for_staff.json()["detail"]
    )
