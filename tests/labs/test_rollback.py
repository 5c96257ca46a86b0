"""A start that fails half way removes what it created, says why, and can simply be retried."""

from pathlib import Path

import pytest
import yaml

from labs import cluster, lifecycle
from labs.exceptions import ClusterForbidden, ClusterUnavailable
from labs.models import LabInstance
from tests.labs.conftest import namespace_exists, wait_for

pytestmark = pytest.mark.django_db
Status = LabInstance.Status

CREATE_STEPS = ["namespaces", "networkpolicies", "resourcequotas", "secrets", "virtualmachineinstances"]


@pytest.mark.parametrize("resource", CREATE_STEPS)
def test_a_500_at_any_create_step_leaves_nothing_and_a_retry_works(
    app_cluster, admin_core, make_lab, student, resource
):
    lab = make_lab(machines=2)
    app_cluster.faults.fail("create", resource, status=500, times=1)

    with pytest.raises(ClusterUnavailable) as raised:
        lifecycle.instance_start(user=student, lab=lab)

    failed = LabInstance.objects.get(owner=student)
    assert failed.status == Status.FAILED
    assert failed.last_error.startswith("Starting failed: Could not create")
    assert raised.value.message in failed.last_error
    assert not namespace_exists(admin_core, failed.namespace)

    retried = lifecycle.instance_start(user=student, lab=lab)
    assert retried.status == Status.STARTING
    assert namespace_exists(admin_core, retried.namespace)


def test_rbac_denial_is_a_clear_error(app_cluster, admin_core, make_lab, student, settings):
    settings.KUBE_CONTEXT = "nobody"
    cluster.reset_client()

    with pytest.raises(ClusterForbidden, match=r"rbac\.yaml"):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert instance.status == Status.FAILED
    assert "not allowed" in instance.last_error
    assert not namespace_exists(admin_core, instance.namespace)


def test_unreachable_cluster_fails_the_instance_and_creates_nothing(
    app_cluster, admin_core, make_lab, student, settings, tmp_path
):
    kubeconfig = yaml.safe_load(Path(app_cluster.kubeconfig).read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = "https://127.0.0.1:9"  # discard port: nothing listens
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(kubeconfig))
    settings.KUBECONFIG = str(bad)
    settings.LABS_ROLLBACK_WAIT_SECONDS = 0.5
    cluster.reset_client()

    with pytest.raises(ClusterUnavailable, match="unreachable"):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert instance.status == Status.FAILED
    assert "unreachable" in instance.last_error
    assert not namespace_exists(admin_core, instance.namespace)


def test_missing_kubeconfig_is_reported_as_misconfiguration(
    app_cluster, make_lab, student, settings, tmp_path
):
    settings.KUBECONFIG = str(tmp_path / "missing")
    cluster.reset_client()

    with pytest.raises(ClusterUnavailable, match="misconfigured"):
        lifecycle.instance_start(user=student, lab=make_lab())

    assert LabInstance.objects.get(owner=student).status == Status.FAILED


def test_a_hanging_api_call_times_out(app_cluster, admin_core, make_lab, student, settings):
    settings.KUBE_REQUEST_TIMEOUT = 0.5
    app_cluster.faults.hang("create", "resourcequotas", seconds=3, times=1)

    with pytest.raises(ClusterUnavailable):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert instance.status == Status.FAILED
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace))


def test_a_namespace_the_cluster_creates_after_the_start_gave_up_is_deleted_at_once(
    app_cluster, admin_core, make_lab, student, settings
):
    settings.KUBE_REQUEST_TIMEOUT = 0.5
    # The API server answers nothing within the client's timeout, then creates the namespace anyway.
    app_cluster.faults.late_commit("create", "namespaces", seconds=2, times=1)
    app_cluster.faults.reset_calls()

    with pytest.raises(ClusterUnavailable, match=r"did not answer within 0\.5 seconds"):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert instance.status == Status.FAILED
    assert not namespace_exists(admin_core, instance.namespace)  # the rollback's delete found nothing

    def created_late() -> bool:
        calls = app_cluster.faults.calls()
        return any((c["verb"], c["resource"], c["status"]) == ("create", "namespaces", 201) for c in calls)

    wait_for(created_late, timeout=15)
    # Gone without any reconcile run: the rollback deletes it again as soon as the create lands.
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace), timeout=10)
    calls = app_cluster.faults.calls()
    deletes = [c["status"] for c in calls if c["verb"] == "delete" and c["name"] == instance.namespace]
    assert deletes == [404, 200]


def test_a_namespace_create_answered_late_without_a_rollback_is_kept(
    app_cluster, admin_core, make_lab, student, settings
):
    settings.KUBE_REQUEST_TIMEOUT = 3
    app_cluster.faults.late_commit("create", "namespaces", seconds=0.5, times=1)

    instance = lifecycle.instance_start(user=student, lab=make_lab())

    assert instance.status == Status.STARTING
    assert namespace_exists(admin_core, instance.namespace)
