"""The app as its service account: rights in its own lab namespaces only (deploy/k8s/rbac.yaml), and
what follows from them. The whole flow with the console is in tests/vncproxy/test_service_account.py."""

import pytest
from kubernetes import client

from labs import cluster, lifecycle, manifests
from labs.exceptions import ClusterForbidden
from labs.models import LabInstance
from localcluster.harness import start_local_cluster
from localcluster.pytest_plugin import FIXTURE_ARGS
from tests.labs.conftest import wait_for, wait_until_running


@pytest.mark.django_db
def test_each_lab_namespace_gets_the_apps_role_binding_and_loses_it_with_the_namespace(
    app_cluster, make_lab, student, local_cluster
):
    rbac = client.RbacAuthorizationV1Api(local_cluster.api_client("admin"))
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    bindings = rbac.list_namespaced_role_binding(instance.namespace).items
    assert [(b.metadata.name, b.role_ref.name) for b in bindings] == [
        ("laborchestrator-lab", "laborchestrator-lab")
    ]
    assert bindings[0].metadata.labels["laborchestrator/instance"] == str(instance.pk)

    lifecycle.instance_stop(instance=instance)
    wait_for(lambda: lifecycle.instance_refresh(instance=instance).status == LabInstance.Status.STOPPED)
    assert rbac.list_namespaced_role_binding(instance.namespace).items == []


@pytest.mark.django_db
def test_an_instance_whose_namespace_was_deleted_behind_its_back_fails_with_a_plain_reason(
    app_cluster, make_lab, student, admin_core
):
    """Without the namespace (and the RoleBinding in it) the app may not even list its VMIs: the
    refresh must see that the namespace went, not report the refusal."""
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    admin_core.delete_namespace(instance.namespace)
    wait_for(
        lambda: not any(n.metadata.name == instance.namespace for n in admin_core.list_namespace().items)
    )

    status = lifecycle.instance_refresh(instance=instance)

    assert status.status == LabInstance.Status.FAILED
    assert status.last_error == "The instance's namespace was deleted outside Lab Orchestrator."


def manifests_vmi() -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}},
    }


@pytest.mark.django_db
def test_the_app_cannot_work_in_a_namespace_it_did_not_bind(app_cluster, admin_core):
    """No cluster-wide write: creating anything elsewhere is refused. (The watcher's list and watch
    of VMIs are the one cluster-wide read, labs/watcher.py.)"""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "kube-system"}}
    vmi = {**manifests_vmi(), "metadata": {"name": "x", "namespace": "kube-system"}}
    for manifest in (secret, vmi):
        with pytest.raises(ClusterForbidden) as raised:
            cluster.create_objects([manifest])
        assert raised.value.status == 403


@pytest.mark.django_db
def test_the_nobody_identity_is_refused_with_a_readable_error(app_cluster, settings):
    settings.KUBE_CONTEXT = "nobody"
    cluster.reset_client()

    with pytest.raises(ClusterForbidden) as raised:
        cluster.list_namespaces(label_selector=manifests.MANAGED_SELECTOR)

    assert "not allowed" in raised.value.message
    assert raised.value.status == 403


@pytest.fixture(scope="module")
def lagging_cluster(tmp_path_factory):
    """A cluster whose RBAC authorizer sees a new RoleBinding 400 ms after it was created."""
    with start_local_cluster(
        tmp_path_factory.mktemp("lagging"),
        runtime="none",
        extra_args=(*FIXTURE_ARGS, "--rbac-propagation-ms", "400"),
    ) as local:
        yield local


@pytest.mark.django_db
def test_a_start_waits_for_the_new_binding_to_take_effect(lagging_cluster, settings, make_lab, student):
    settings.KUBECONFIG = str(lagging_cluster.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    cluster.reset_client()
    try:
        lagging_cluster.faults.reset_calls()
        instance = lifecycle.instance_start(user=student, lab=make_lab())
        assert instance.status == LabInstance.Status.STARTING, instance.last_error
        wait_until_running(instance)
        refused = [c for c in lagging_cluster.faults.calls() if c["status"] == 403]
        assert refused, "the cluster did not lag: this test proves nothing"
        assert {c["namespace"] for c in refused} == {instance.namespace}
    finally:
        cluster.reset_client()


@pytest.mark.django_db
def test_a_refusal_that_lasts_still_fails_the_start(app_cluster, settings, make_lab, student):
    settings.LABS_RBAC_PROPAGATION_SECONDS = 0.3
    app_cluster.faults.fail("create", "networkpolicies", status=403, times=None)
    with pytest.raises(ClusterForbidden):
        lifecycle.instance_start(user=student, lab=make_lab())
    failed = LabInstance.objects.get()
    assert failed.status == LabInstance.Status.FAILED
    assert "not allowed" in failed.last_error
