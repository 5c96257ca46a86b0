"""The Deployment's probes ask endpoints that exist and answer what Kubernetes needs to hear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import resolve

from laborchestrator import health
from tests.deploy.manifests import K8S_DIR, find, load_documents, pod_spec

# What the kubelet sends: the pod's IP, which ALLOWED_HOSTS rightly does not list.
POD_HOST = "10.244.1.17:8000"


@pytest.fixture
def unreachable_cluster(settings, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                # Port 1 on loopback: connection refused at once.
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "probe-test-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    settings.KUBE_IN_CLUSTER = False
    settings.KUBECONFIG = str(kubeconfig)
    settings.KUBE_CONTEXT = ""


def web_container() -> dict:
    deployment = find(load_documents(K8S_DIR / "deployment.yaml"), "Deployment", "laborchestrator")
    (container,) = pod_spec(deployment)["containers"]
    return container


def test_probe_paths_resolve_to_the_health_views() -> None:
    container = web_container()
    assert resolve(container["livenessProbe"]["httpGet"]["path"]).func is health.healthz
    assert resolve(container["startupProbe"]["httpGet"]["path"]).func is health.healthz
    assert resolve(container["readinessProbe"]["httpGet"]["path"]).func is health.readyz
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == 8000


def test_readiness_answers_before_the_probe_gives_up() -> None:
    container = web_container()
    assert container["readinessProbe"]["timeoutSeconds"] > health.CHECK_TIMEOUT


def test_healthz_answers_the_kubelet_without_touching_the_database(client) -> None:
    # No django_db mark: any query here would raise, so a database outage cannot fail liveness.
    response = client.get("/healthz", HTTP_HOST=POD_HOST)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_other_pages_still_refuse_an_unknown_host(client) -> None:
    assert client.get("/admin/login/", HTTP_HOST=POD_HOST).status_code == 400


@pytest.mark.django_db
def test_readyz_is_200_with_the_cluster_unreachable(client, unreachable_cluster) -> None:
    """Readiness is this process and its database: a cluster outage must not take the site away."""
    response = client.get("/readyz", HTTP_HOST=POD_HOST)
    assert response.status_code == 200, response.content
    assert response.json() == {"database": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_fails_without_leaking_its_url(client, monkeypatch) -> None:
    def database_down() -> None:
        raise ConnectionError('could not connect to "postgres://lab:s3cr3t-pw@postgres:5432/lab"')

    monkeypatch.setattr(health, "check_database", database_down)
    response = client.get("/readyz", HTTP_HOST=POD_HOST)
    assert response.status_code == 503
    assert response.json() == {"database": "unavailable"}
    assert "s3cr3t" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_reports_a_hung_check_as_a_timeout(client, monkeypatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)
    monkeypatch.setattr(health, "check_database", lambda: __import__("time").sleep(1))
    response = client.get("/readyz", HTTP_HOST=POD_HOST)
    assert response.status_code == 503
    assert response.json()["database"] == "timeout"


async def test_probes_answer_under_asgi_too(async_client) -> None:
    # The ASGI server runs the middleware chain asynchronously; the probes take their own thread there.
    response = await async_client.get("/healthz", headers={"Host": POD_HOST})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
