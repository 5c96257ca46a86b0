"""The service account's role grants what the lifecycle calls, and nothing more."""

from pathlib import Path

import pytest
import yaml

from labs import cluster, lifecycle
from labs.exceptions import ClusterForbidden
from tests.labs.conftest import wait_until_running, wait_until_stopped

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "rbac.yaml"
# Called by the console proxy (vncproxy), not by the lifecycle.
CONSOLE_PERMISSIONS = {("get", "virtualmachineinstances/vnc"), ("get", "virtualmachineinstances/console")}


def granted() -> set[tuple[str, str]]:
    role = next(doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc and doc["kind"] == "ClusterRole")
    return {
        (verb, resource) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]
    }


def used(calls) -> set[tuple[str, str]]:
    result = set()
    for call in calls:
        resource = call["resource"] + (f"/{call['subresource']}" if call.get("subresource") else "")
        result.add((call["verb"], resource))
    return result


@pytest.mark.django_db
def test_the_role_grants_exactly_what_the_lifecycle_calls(app_cluster, make_lab, student, settings):
    app_cluster.faults.reset_calls()
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    wait_until_running(instance)
    lifecycle.instance_pause(instance=instance)
    lifecycle.instance_resume(instance=instance)
    lifecycle.reconcile()
    lifecycle.instance_stop(instance=instance)
    wait_until_stopped(instance)

    assert used(app_cluster.faults.calls()) == granted() - CONSOLE_PERMISSIONS


@pytest.mark.django_db
def test_the_nobody_identity_is_refused_with_a_readable_error(app_cluster, make_lab, student, settings):
    settings.KUBE_CONTEXT = "nobody"
    cluster.reset_client()

    with pytest.raises(ClusterForbidden) as raised:
        cluster.list_managed_namespaces()

    assert "not allowed" in raised.value.message
    assert raised.value.status == 403
