"""Container machines' Pods as plain data, and the same Pod accepted by the local cluster as the
app's service account (validation, the admission policy) in a lab namespace."""

from __future__ import annotations

import uuid

from kubernetes import client

from labs import manifests
from labs.launcher_sizing import KubeVirtSizing, launcher_pod_size
from labs.manifests import MachineSpec
from tests.labs.test_manifests import ROUTER, build

TOOLS = MachineSpec(
    name="tools",
    image_reference="registry.example:5000/labs/tools:1",
    cores=1,
    memory_mib=128,
    username="1000",
    password="",
    has_vnc=False,
    has_serial_console=False,
    kind=manifests.MACHINE_KIND_CONTAINER,
    command=("sleep", "infinity"),
    args=("--verbose",),
    env=(("GREETING", "hello"),),
    ports=(8080,),
)


def test_a_container_machine_is_a_pod_with_requests_equal_to_limits_and_nothing_privileged():
    pod = manifests.make_pod(namespace="net101-42", labels={"a": "b"}, machine=TOOLS)
    assert pod["metadata"] == {
        "name": "tools",
        "namespace": "net101-42",
        "labels": {"a": "b", manifests.MACHINE_LABEL: "tools"},
    }
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["hostname"] == "tools" and spec["subdomain"] == manifests.MACHINES_SERVICE_NAME
    (container,) = spec["containers"]
    assert container["image"] == "registry.example:5000/labs/tools:1"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "128Mi"},
    }
    assert container["securityContext"] == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
    }
    assert container["command"] == ["sleep", "infinity"] and container["args"] == ["--verbose"]
    assert container["env"] == [{"name": "GREETING", "value": "hello"}]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_a_named_shell_user_leaves_the_images_user():
    named = MachineSpec(
        **{**TOOLS.__dict__, "username": "student", "command": (), "args": (), "env": (), "ports": ()}
    )
    (container,) = manifests.make_pod(namespace="n", labels={}, machine=named)["spec"]["containers"]
    assert "runAsUser" not in container["securityContext"]
    assert not {"command", "args", "env", "ports"} & set(container)


def test_instances_get_pods_for_containers_and_vmis_for_vms_and_a_quota_for_both():
    objects = build(machines=(ROUTER, TOOLS))
    assert [p["metadata"]["name"] for p in objects.pods] == ["tools"]
    assert [v["metadata"]["name"] for v in objects.vmis] == ["router"]
    assert [s["metadata"]["name"] for s in objects.secrets] == [manifests.secret_name("router")]
    hard = objects.resource_quota["spec"]["hard"]
    router = launcher_pod_size(manifests.machine_shape(ROUTER), KubeVirtSizing())
    assert hard["limits.memory"] == f"{-(-(router.memory_limit + 128 * 1024 * 1024) // (1024 * 1024))}Mi"
    assert hard["requests.cpu"] == f"{router.cpu_request + 1000}m"
    assert hard[manifests.VMI_COUNT_QUOTA_KEY] == "1"


def test_the_local_cluster_runs_the_pod_as_the_apps_account_and_the_quota_fits_it(local_cluster):
    admin = client.CoreV1Api(local_cluster.api_client("admin"))
    app_client = local_cluster.api_client("laborchestrator")
    objects = build(machines=(TOOLS,))
    namespace = f"pods-{uuid.uuid4().hex[:8]}"
    labels = objects.namespace["metadata"]["labels"]
    admin.create_namespace({"metadata": {"name": namespace, "labels": labels}})
    try:
        binding = {
            **objects.role_binding,
            "metadata": {**objects.role_binding["metadata"], "namespace": namespace},
        }
        client.RbacAuthorizationV1Api(app_client).create_namespaced_role_binding(namespace, binding)
        app = client.CoreV1Api(app_client)
        quota = {
            **objects.resource_quota,
            "metadata": {**objects.resource_quota["metadata"], "namespace": namespace},
        }
        app.create_namespaced_resource_quota(namespace, quota)
        pod = {**objects.pods[0], "metadata": {**objects.pods[0]["metadata"], "namespace": namespace}}
        created = app.create_namespaced_pod(namespace, pod)
        assert created.status.qos_class == "Guaranteed"
        listed = app.list_namespaced_pod(namespace, label_selector=manifests.instance_selector(42))
        assert [p.metadata.name for p in listed.items] == ["tools"]
    finally:
        admin.delete_namespace(namespace)
