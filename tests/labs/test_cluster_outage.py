"""With the cluster unreachable (a local cluster of the test's own, started, used, then stopped): the
site stays up. Sign-in, the catalog, tutorials and admin work, readiness passes, starting a lab
answers 503 in plain words, a running lab shows "cluster unreachable since ...", and the cluster's
own health endpoint and metric say so. (LTI launch: tests/lti/test_launch_cluster_down.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from labs import cluster, lifecycle
from labs.models import LabInstance
from labs.watcher import ClusterWatcher
from localcluster.harness import start_local_cluster
from tests.labs.conftest import wait_for, watched
from tutorials.models import Tutorial, TutorialPage

Status = LabInstance.Status
pytestmark = pytest.mark.django_db
PASSWORD = "pw-outage-1234"


@dataclass
class Outage:
    instance: LabInstance
    watcher: ClusterWatcher
    tutorial: Tutorial


@pytest.fixture
def outage(tmp_path, settings, make_lab, student) -> Iterator[Outage]:
    """A running lab, recorded by the watcher; then the cluster goes away (its server stops)."""
    settings.KUBE_REQUEST_TIMEOUT = 2.0
    lab = make_lab(machines=2)
    tutorial = Tutorial.objects.create(title="Outage", slug=f"t-{lab.slug}", published=True)
    tutorial.labs.add(lab)
    TutorialPage.objects.create(tutorial=tutorial, title="One", body_markdown="Reach {{ vm.vm0.ip }}")
    student.set_password(PASSWORD)
    student.save()
    with start_local_cluster(tmp_path / "lc", runtime="none") as own:
        settings.KUBECONFIG = str(own.kubeconfig)
        settings.KUBE_CONTEXT = "laborchestrator"
        settings.KUBE_IN_CLUSTER = False
        cluster.reset_client()
        instance = lifecycle.instance_start(user=student, lab=lab)
        watcher = ClusterWatcher()
        watcher.start()
        try:
            watched(watcher, lambda: (instance.refresh_from_db(), instance.status == Status.RUNNING)[1])
            watcher.heartbeat()
            own.stop()  # the outage
            watcher.heartbeat()
            yield Outage(instance=instance, watcher=watcher, tutorial=tutorial)
        finally:
            watcher.stop()
    cluster.reset_client()


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def test_sign_in_catalog_and_tutorials_work(outage, student):
    browser = Client()
    signed_in = browser.post("/accounts/login/", {"username": student.username, "password": PASSWORD})
    assert signed_in.status_code == 302
    catalog = browser.get("/")
    assert catalog.status_code == 200
    assert outage.instance.lab.name.encode() in catalog.content
    token = APIClient().post("/api/auth/token/", {"username": student.username, "password": PASSWORD})
    assert token.status_code == 200
    api = api_for(student)
    tutorial = api.get(f"/api/tutorials/{outage.tutorial.slug}/?instance={outage.instance.pk}")
    assert tutorial.status_code == 200
    # The machine's address as the watch last recorded it, without asking the (absent) cluster.
    address = outage.instance.machines.get(name="vm0").ip_address
    assert address and address in tutorial.content.decode()


def test_admin_works(outage, instructor):
    browser = Client()
    browser.force_login(instructor)
    assert browser.get("/admin/labs/labinstance/").status_code == 200
    assert browser.get(f"/admin/labs/labinstance/{outage.instance.pk}/change/").status_code == 200


def test_readiness_passes_and_cluster_health_reports_the_outage(outage):
    browser = Client()
    assert browser.get("/readyz").json() == {"database": "ok"}
    health = browser.get("/healthz/cluster")
    assert health.status_code == 503
    assert health.json()["cluster"] == "unreachable"
    assert health.json()["unreachable_since"]
    assert "127.0.0.1" not in health.content.decode()
    metrics = browser.get("/metrics").content.decode()
    assert "laborchestrator_cluster_up 0" in metrics
    assert "laborchestrator_cluster_watcher_up 1" in metrics


def test_starting_a_lab_answers_503_in_plain_words(outage, make_lab, other_student):
    response = api_for(other_student).post("/api/instances/", {"lab": make_lab().slug}, format="json")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "The lab service cannot reach the cluster right now. Try again in a minute.",
        "code": "cluster_unavailable",
    }
    assert not LabInstance.objects.filter(owner=other_student).active().exists()  # nothing left half-made


def test_a_running_lab_shows_the_last_known_status_and_since_when_the_cluster_is_unreachable(outage, student):
    api = api_for(student)
    detail = api.get(f"/api/instances/{outage.instance.pk}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["status"] == Status.RUNNING
    assert body["status_current"] is False
    assert body["cluster_unreachable_since"]
    assert all(m["phase"] == "Running" and m["ip_address"] for m in body["machines"])
    # The page itself loads and carries the element that says so.
    browser = Client()
    browser.force_login(student)
    page = browser.get(f"/instances/{outage.instance.pk}/")
    assert page.status_code == 200
    assert b'id="status-staleness"' in page.content
    # "Refresh now" asks the cluster once, says it cannot, and is rate-limited per instance.
    refreshed = api.post(f"/api/instances/{outage.instance.pk}/refresh/")
    assert refreshed.status_code == 503
    again = api.post(f"/api/instances/{outage.instance.pk}/refresh/")
    assert again.status_code == 429
    assert "Retry-After" in again


def test_the_watcher_recovers_when_the_cluster_comes_back(outage, settings, tmp_path):
    """A new cluster answers at the configured address again: the watcher reconnects (backoff) and
    reports it in sync."""
    with start_local_cluster(tmp_path / "lc2", runtime="none") as again:
        settings.KUBECONFIG = str(again.kubeconfig)
        cluster.reset_client()

        def recovered() -> bool:
            outage.watcher.heartbeat()
            return outage.watcher.healthy

        wait_for(recovered, timeout=40, interval=0.5)
        body = Client().get("/healthz/cluster").json()
        assert body["cluster"] == "ok" and body["unreachable_since"] is None
