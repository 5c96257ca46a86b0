"""Conformance: the Pods API as kube-apiserver serves it (pkg/apis/core/validation/validation.go
ValidatePodCreate/ValidatePodUpdate, pkg/apis/core/v1/defaults.go, the ResourceQuota admission
plugin pkg/quota/v1/evaluator/core/pods.go), RBAC on pods/exec, and the admission policy of
deploy/k8s/admission-policy.yaml on pods. What the local cluster does not implement is a 422 that
says so. Running containers: tests/localcluster_containers/."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.localcluster.lc_helpers import status_of
from tests.localcluster.test_admission_policies import MANAGED, binding, denial


def pod(name: str = "p", **container) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.example/tools:1", **container}]},
    }


@pytest.fixture
def ns(core):
    name = f"p-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    yield name
    core.delete_namespace(name)


def _invalid(core, ns, body) -> dict:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(ns, body)
    assert err.value.status == 422, err.value.body
    return status_of(err.value)


def test_defaults_as_the_api_server_applies_them(core, ns):
    created = core.create_namespaced_pod(ns, pod(resources={"limits": {"cpu": "1", "memory": "64Mi"}}))
    spec = created.spec
    assert spec.restart_policy == "Always" and spec.dns_policy == "ClusterFirst"
    assert spec.termination_grace_period_seconds == 30 and spec.service_account_name == "default"
    container = spec.containers[0]
    assert container.image_pull_policy == "IfNotPresent"
    assert container.termination_message_path == "/dev/termination-log"
    assert container.resources.requests == {"cpu": "1", "memory": "64Mi"}  # requests default to limits
    assert created.status.phase == "Pending" and created.status.qos_class == "Guaranteed"


def test_validation_messages(core, ns):
    status = _invalid(core, ns, {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert status["message"] == 'Pod "p" is invalid: spec.containers: Required value'
    status = _invalid(core, ns, pod(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "2": must be less than or equal to cpu limit of 1',
            "field": "spec.containers[0].resources.requests",
        }
    ]
    status = _invalid(core, ns, pod(ports=[{"containerPort": 70000}]))
    assert "must be between 1 and 65535, inclusive" in status["message"]
    body = pod()
    body["spec"]["restartPolicy"] = "Sometimes"
    status = _invalid(core, ns, body)
    assert (
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
        in status["message"]
    )
    body = pod(name="ok")
    body["spec"]["containers"][0]["name"] = "Bad_Name"
    assert "a lowercase RFC 1123 label" in _invalid(core, ns, body)["message"]


def test_what_localcluster_does_not_implement_is_refused_with_a_clear_422(core, ns):
    body = pod()
    body["spec"]["initContainers"] = [{"name": "init", "image": "x"}]
    status = _invalid(core, ns, body)
    assert (
        "spec.initContainers: Unsupported value: localcluster does not implement initContainers"
        in status["message"]
    )
    status = _invalid(
        core, ns, pod(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    )
    assert "localcluster does not implement valueFrom" in status["message"]


def test_the_spec_cannot_change(core, ns):
    core.create_namespaced_pod(ns, pod())
    with pytest.raises(client.ApiException) as err:
        core.patch_namespaced_pod("p", ns, {"spec": {"activeDeadlineSeconds": 5}})
    assert err.value.status == 422


def test_quota_counts_pods_and_refuses_at_create(core, ns):
    core.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "q"}, "spec": {"hard": {"limits.memory": "100Mi", "pods": "5"}}}
    )
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(ns, pod("nolimit"))
    assert err.value.status == 403
    assert (
        status_of(err.value)["message"]
        == 'pods "nolimit" is forbidden: failed quota: q: must specify limits.memory'
    )
    core.create_namespaced_pod(ns, pod("a", resources={"limits": {"memory": "64Mi", "cpu": "1"}}))
    quota = core.read_namespaced_resource_quota("q", ns)
    assert quota.status.used == {"limits.memory": "64Mi", "pods": "1"}
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(ns, pod("b", resources={"limits": {"memory": "64Mi", "cpu": "1"}}))
    assert status_of(err.value)["message"] == (
        'pods "b" is forbidden: exceeded quota: q, requested: limits.memory=64Mi, used: '
        "limits.memory=64Mi, limited: limits.memory=100Mi"
    )
    with pytest.raises(client.ApiException):
        core.read_namespaced_pod("b", ns)


def _app_namespace(core, local_cluster) -> tuple[str, client.CoreV1Api]:
    name = f"a-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    app = local_cluster.api_client("laborchestrator")
    client.RbacAuthorizationV1Api(app).create_namespaced_role_binding(name, binding())
    return name, client.CoreV1Api(app)


SAFE = {"securityContext": {"allowPrivilegeEscalation": False}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"containers": [{"name": "main", "image": "x", "securityContext": {"privileged": True}}]},
            "Lab Orchestrator's containers may not be privileged.",
        ),
        (
            {"hostNetwork": True},
            "Lab Orchestrator's containers may not use the node's network, PID or IPC namespaces.",
        ),
        (
            {"hostPID": True},
            "Lab Orchestrator's containers may not use the node's network, PID or IPC namespaces.",
        ),
        (
            {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
            "Lab Orchestrator's containers may not mount host paths.",
        ),
        (
            {"containers": [{"name": "main", "image": "x"}]},
            "Lab Orchestrator's containers must set allowPrivilegeEscalation to false.",
        ),
    ],
)
def test_the_admission_policy_refuses_dangerous_pods_from_the_app(core, local_cluster, change, message):
    ns, app = _app_namespace(core, local_cluster)
    try:
        body = pod(**SAFE)
        body["spec"].update(change)
        with pytest.raises(client.ApiException) as err:
            app.create_namespaced_pod(ns, body)
        assert err.value.status == 403
        assert (
            status_of(err.value)["message"]
            == f'pods "p" is forbidden: {denial("laborchestrator-pods", message)}'
        )
        app.create_namespaced_pod(ns, pod("fine", **SAFE))  # the shape the app creates passes
    finally:
        core.delete_namespace(ns)


def test_exec_needs_create_on_pods_exec(core, local_cluster):
    import websockets.sync.client as ws_client
    from websockets.exceptions import InvalidStatus

    ns = f"e-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        core.create_namespaced_pod(ns, pod())
        url = (
            local_cluster.url.replace("https://", "wss://")
            + f"/api/v1/namespaces/{ns}/pods/p/exec?command=sh"
        )
        with pytest.raises(InvalidStatus) as refused:
            ws_client.connect(
                url,
                ssl=local_cluster.ssl_context(),
                subprotocols=["v5.channel.k8s.io"],
                additional_headers={"Authorization": f"Bearer {local_cluster.token('nobody')}"},
            )
        assert refused.value.response.status_code == 403
        assert b'resource \\"pods/exec\\"' in refused.value.response.body
    finally:
        core.delete_namespace(ns)
