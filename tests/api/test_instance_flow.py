"""Start → status → pause → resume → stop over the API, against the local cluster."""

import pytest

from labs.models import LabInstance
from tests.labs.conftest import watched

pytestmark = pytest.mark.django_db
Status = LabInstance.Status


def test_full_lifecycle_over_the_api(app_cluster, cluster_watcher, make_lab, student, client_for):
    lab = make_lab(machines=2)
    client = client_for(student)

    started = client.post("/api/instances/", {"lab": lab.slug}, format="json")
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["status"] == Status.STARTING
    assert body["lab"] == lab.slug
    assert body["expires_at"]
    assert [m["name"] for m in body["machines"]] == ["vm0", "vm1"]
    url = f"/api/instances/{body['id']}/"

    def running() -> dict | None:
        detail = client.get(url).json()
        return detail if detail["status"] == Status.RUNNING else None

    detail = watched(cluster_watcher, running)
    for machine in detail["machines"]:
        assert machine["phase"] == "Running"
        assert machine["ip_address"]
        assert machine["paused"] is False
        assert machine["username"] == "cirros"
        assert len(machine["password"]) >= 16
        assert machine["consoles"] == {
            "vnc": f"ws://testserver/ws/instances/{body['id']}/machines/{machine['name']}/vnc",
            "serial": f"ws://testserver/ws/instances/{body['id']}/machines/{machine['name']}/serial",
            "terminal": None,
        }
    # The list shows the stored status without asking the cluster.
    (listed,) = client.get("/api/instances/").json()["results"]
    assert listed["status"] == Status.RUNNING
    assert listed["pending_action"] is None
    assert "machines" not in listed

    paused = client.post(f"{url}pause/")
    assert paused.status_code == 200 and paused.json()["status"] == Status.PAUSED
    assert paused.json()["pending_action"] == "pause"  # until the cluster's Paused conditions agree
    assert client.post(f"{url}pause/").status_code == 200  # pausing twice is harmless
    detail = watched(cluster_watcher, lambda: (d := client.get(url).json())["pending_action"] is None and d)
    assert detail["status"] == Status.PAUSED
    assert all(m["paused"] and m["ready"] is False for m in detail["machines"])

    resumed = client.post(f"{url}resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == Status.RUNNING
    assert resumed.json()["pending_action"] == "resume"
    detail = watched(cluster_watcher, lambda: (d := client.get(url).json())["pending_action"] is None and d)
    assert detail["status"] == Status.RUNNING
    assert not any(m["paused"] for m in detail["machines"])

    stopped = client.delete(url)
    assert stopped.status_code in (200, 202)
    assert stopped.json()["status"] in (Status.STOPPING, Status.STOPPED)
    watched(cluster_watcher, lambda: client.get(url).json()["status"] == Status.STOPPED)
    assert client.delete(url).status_code == 200  # stopping twice is harmless
    refused = client.post(f"{url}resume/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_transition"


def test_start_by_lab_id_and_limits_answer_409_with_the_rule(app_cluster, make_lab, student, client_for):
    lab = make_lab(instances_per_user=1)
    client = client_for(student)

    assert client.post("/api/instances/", {"lab": lab.pk}, format="json").status_code == 201
    second = client.post("/api/instances/", {"lab": lab.pk}, format="json")

    assert second.status_code == 409
    assert second.json() == {
        "detail": f"You may run 1 instance of {lab.name!r} at a time; stop it before starting another.",
        "code": "limit_reached",
    }


def test_cluster_down_is_503_with_a_message(app_cluster, make_lab, student, instructor, client_for, settings):
    settings.KUBECONFIG = "/nonexistent/kubeconfig"
    from labs import cluster

    cluster.reset_client()
    response = client_for(student).post("/api/instances/", {"lab": make_lab().slug}, format="json")

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The lab service cannot reach the cluster right now. Try again in a minute.",
        "code": "cluster_unavailable",
    }
    # Staff get the operator's detail.
    as_staff = client_for(instructor).post("/api/instances/", {"lab": make_lab().slug}, format="json")
    assert as_staff.status_code == 503
    assert "misconfigured" in as_staff.json()["detail"]


def test_unknown_or_hidden_lab_is_a_field_error(make_lab, student, client_for):
    hidden = make_lab(published=False)
    client = client_for(student)

    for reference in (hidden.slug, hidden.pk, "nope", 999999):
        response = client.post("/api/instances/", {"lab": reference}, format="json")
        assert response.status_code == 400
        assert list(response.json()) == ["lab"]
    assert client.post("/api/instances/", {}, format="json").json() == {"lab": ["This field is required."]}


def test_starts_are_throttled(make_lab, student, client_for, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"instance_start": "2/hour"},
    }
    client = client_for(student)
    hidden = make_lab(published=False)

    codes = [
        client.post("/api/instances/", {"lab": hidden.slug}, format="json").status_code for _ in range(3)
    ]

    assert codes == [400, 400, 429]


def test_a_resume_before_the_cluster_confirmed_the_pause_is_a_409_saying_so(
    cluster_watcher, app_cluster, make_lab, student, client_for
):
    app_cluster.faults.slow_pause_condition(ms=30_000)
    client = client_for(student)
    started = client.post("/api/instances/", {"lab": make_lab().slug}, format="json").json()
    url = f"/api/instances/{started['id']}/"
    watched(cluster_watcher, lambda: client.get(url).json()["status"] == Status.RUNNING)
    assert client.post(f"{url}pause/").status_code == 200

    detail = client.get(url).json()
    refused = client.post(f"{url}resume/")

    assert (detail["status"], detail["pending_action"]) == (Status.PAUSED, "pause")
    assert detail["machines"][0]["paused"] is False  # the cluster has not caught up yet
    assert refused.status_code == 409
    assert refused.json()["detail"] == "The machines are still pausing; try again in a moment."
