"""Conformance: ValidatingAdmissionPolicy. The local cluster evaluates the policies of
deploy/k8s/admission-policy.yaml on every write, as kube-apiserver's admission does, and refuses
with the real Status (staging/src/k8s.io/apiserver/pkg/admission/plugin/policy/validating/
dispatcher.go: "ValidatingAdmissionPolicy '<p>' with binding '<b>' denied request: <message>",
reason from the validation, one cause with the same text; validator.go: "failed expression: ...").

The app's own calls pass (tests/labs runs the whole app as its service account); here the hostile
ones: what a compromised or buggy app could try with the rights RBAC alone would give it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from localcluster.admission import AdmissionPolicies, AdmissionRequest, PolicyError
from localcluster.errors import ApiError
from localcluster.rbac import User
from localcluster.resources import NAMESPACES, VIRTUAL_MACHINE_INSTANCES
from tests.localcluster.lc_helpers import small_vmi, status_of

MANAGED = {"app.kubernetes.io/managed-by": "laborchestrator"}
APP_SA = {"kind": "ServiceAccount", "name": "laborchestrator", "namespace": "laborchestrator"}
KV = ("kubevirt.io", "v1")


def denial(policy: str, message: str) -> str:
    return f"ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: {message}"


def binding(name: str = "lab", role: str = "laborchestrator-lab", subjects: list[dict] | None = None) -> dict:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects if subjects is not None else [APP_SA],
    }


@pytest.fixture(scope="module")
def app_api(local_cluster) -> client.ApiClient:
    return local_cluster.api_client("laborchestrator")


def _namespace(core: client.CoreV1Api, labels: dict[str, str] | None) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def lab_ns(core, app_api) -> Iterator[str]:
    """A labelled namespace where the app's account has bound its lab role, as the app does."""
    for name in _namespace(core, MANAGED):
        client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(name, binding())
        yield name


@pytest.fixture
def plain_ns(core) -> Iterator[str]:
    """Somebody else's namespace: no label."""
    yield from _namespace(core, None)


# -- namespaces ------------------------------------------------------------------------------------
def test_the_app_may_not_delete_a_namespace_it_did_not_create(app_api, plain_ns, core):
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(app_api).delete_namespace(plain_ns)
    status = status_of(err.value)
    message = denial(
        "laborchestrator-namespaces",
        "Lab Orchestrator may delete only the namespaces it created "
        "(label app.kubernetes.io/managed-by=laborchestrator).",
    )
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == f'namespaces "{plain_ns}" is forbidden: {message}'
    assert status["details"] == {"name": plain_ns, "kind": "namespaces", "causes": [{"message": message}]}
    assert core.read_namespace(plain_ns).status.phase == "Active"


def test_the_app_may_delete_a_labelled_namespace(app_api, core):
    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(app_api).create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    deleted = client.CoreV1Api(app_api).delete_namespace(name)
    assert deleted["status"]["phase"] == "Terminating"


def test_the_policies_leave_other_users_alone(core):
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    assert core.delete_namespace(name)["status"]["phase"] == "Terminating"


# -- role bindings ---------------------------------------------------------------------------------
def test_the_app_may_not_bind_its_role_in_a_namespace_it_did_not_create(app_api, plain_ns, admin_api):
    with pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(plain_ns, binding())
    status = status_of(err.value)
    assert err.value.status == 403
    assert status["message"] == (
        'rolebindings.rbac.authorization.k8s.io "lab" is forbidden: '
        + denial(
            "laborchestrator-rolebindings",
            "Lab Orchestrator may bind roles only in the namespaces it created.",
        )
    )
    assert client.RbacAuthorizationV1Api(admin_api).list_namespaced_role_binding(plain_ns).items == []
    # So RBAC alone (bind + create rolebindings cluster-wide) never reaches another namespace's Secrets.
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(app_api).create_namespaced_secret(plain_ns, {"metadata": {"name": "s"}})
    assert err.value.status == 403


def test_the_app_may_not_hand_its_lab_role_to_another_account(app_api, core):
    for name in _namespace(core, MANAGED):
        other = {"kind": "ServiceAccount", "name": "default", "namespace": name}
        with pytest.raises(client.ApiException) as err:
            client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(
                name, binding(subjects=[APP_SA, other])
            )
        assert err.value.status == 403
        assert status_of(err.value)["message"].endswith(
            "Lab Orchestrator may bind its lab role only to its own service account."
        )


def test_a_role_the_app_already_holds_passes_rbac_but_not_the_policy(app_api, core):
    """RBAC lets anyone bind a role whose permissions they hold (here the app's cluster-wide role);
    the policy still allows only the lab role."""
    for name in _namespace(core, MANAGED):
        with pytest.raises(client.ApiException) as err:
            client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(
                name, binding(role="laborchestrator")
            )
        assert err.value.status == 403
        assert status_of(err.value)["message"].endswith(
            "Lab Orchestrator may bind only the ClusterRole laborchestrator-lab."
        )


# -- virtual machine instances ---------------------------------------------------------------------
HOSTILE_VOLUMES = {
    "secret": {"secret": {"secretName": "anything"}},
    "serviceAccount": {"serviceAccount": {"serviceAccountName": "default"}},
    "configMap": {"configMap": {"name": "anything"}},
    "persistentVolumeClaim": {"persistentVolumeClaim": {"claimName": "data"}},
    "hostDisk": {"hostDisk": {"path": "/etc/shadow.img", "type": "Disk"}},
    "downwardAPI": {
        "downwardAPI": {"fields": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}
    },
    "containerDisk and secret in one volume": {
        "containerDisk": {"image": "quay.io/containerdisks/cirros:0.6"},
        "secret": {"secretName": "anything"},
    },
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_VOLUMES))
def test_the_apps_machines_may_mount_no_other_volume(app_api, lab_ns, kind):
    vmi = small_vmi("vm")
    vmi["spec"]["domain"]["devices"]["disks"].append({"name": "extra", "disk": {"bus": "virtio"}})
    vmi["spec"]["volumes"].append({"name": "extra", **HOSTILE_VOLUMES[kind]})
    with pytest.raises(client.ApiException) as err:
        client.CustomObjectsApi(app_api).create_namespaced_custom_object(
            *KV, lab_ns, "virtualmachineinstances", vmi
        )
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        'virtualmachineinstances.kubevirt.io "vm" is forbidden: '
        + denial(
            "laborchestrator-virtualmachineinstances",
            "Lab Orchestrator's machines may use only containerDisk and cloudInitNoCloud volumes.",
        )
    )
    assert (
        client.CustomObjectsApi(app_api).list_namespaced_custom_object(
            *KV, lab_ns, "virtualmachineinstances"
        )["items"]
        == []
    )


def test_the_apps_machines_may_not_take_access_credentials_or_hook_sidecars(app_api, lab_ns):
    api = client.CustomObjectsApi(app_api)
    with_credentials = small_vmi("creds")
    with_credentials["spec"]["accessCredentials"] = [
        {"sshPublicKey": {"source": {"secret": {"secretName": "keys"}}, "propagationMethod": {"noCloud": {}}}}
    ]
    with_sidecar = small_vmi("hook")
    with_sidecar["metadata"]["annotations"] = {"hooks.kubevirt.io/hookSidecars": '[{"image": "evil"}]'}
    for vmi, message in (
        (with_credentials, "Lab Orchestrator's machines may not use accessCredentials."),
        (with_sidecar, "Lab Orchestrator's machines may not have hook sidecars."),
    ):
        with pytest.raises(client.ApiException) as err:
            api.create_namespaced_custom_object(*KV, lab_ns, "virtualmachineinstances", vmi)
        assert status_of(err.value)["message"].endswith(message)


def test_a_container_disk_and_cloud_init_machine_is_admitted(app_api, lab_ns):
    vmi = small_vmi("vm")
    vmi["spec"]["domain"]["devices"]["disks"].append({"name": "cloudinit", "disk": {"bus": "virtio"}})
    vmi["spec"]["volumes"].append(
        {"name": "cloudinit", "cloudInitNoCloud": {"secretRef": {"name": "vm-cloudinit"}}}
    )
    created = client.CustomObjectsApi(app_api).create_namespaced_custom_object(
        *KV, lab_ns, "virtualmachineinstances", vmi
    )
    assert created["metadata"]["name"] == "vm"


HOSTILE_SERVICES = {
    "a cluster IP": {"selector": {"app": "x"}, "ports": [{"port": 22}]},
    "a node port": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 22}]},
    "a load balancer": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 22}]},
    "external IPs on a headless service": {"clusterIP": "None", "externalIPs": ["203.0.113.7"]},
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_SERVICES))
def test_the_app_may_create_only_headless_services(app_api, lab_ns, kind):
    """Its Service names the machines (labs/manifests.py make_machines_service); none may expose them."""
    core = client.CoreV1Api(app_api)
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_service(
            lab_ns, {"metadata": {"name": "exposed"}, "spec": HOSTILE_SERVICES[kind]}
        )
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == 'services "exposed" is forbidden: ' + denial(
        "laborchestrator-services",
        "Lab Orchestrator may create only headless Services (clusterIP None, no external IPs).",
    )
    headless = {"clusterIP": "None", "selector": {"app": "x"}, "publishNotReadyAddresses": True}
    assert core.create_namespaced_service(lab_ns, {"metadata": {"name": "lab"}, "spec": headless})


def test_admin_may_create_any_machine(vmis, ns):
    vmi = small_vmi("vm")
    vmi["spec"]["domain"]["devices"]["disks"].append({"name": "extra", "disk": {"bus": "virtio"}})
    vmi["spec"]["volumes"].append({"name": "extra", "secret": {"secretName": "s"}})
    assert vmis.create(ns, vmi)["metadata"]["name"] == "vm"


# -- the evaluator's own rules, without a server -----------------------------------------------------
def _policies(validation: dict, *, actions: tuple[str, ...] = ("Deny",), **spec) -> AdmissionPolicies:
    return AdmissionPolicies.from_documents(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": "p"},
                "spec": {
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["*"],
                                "resources": ["namespaces"],
                            }
                        ]
                    },
                    "validations": [validation],
                    **spec,
                },
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": "b"},
                "spec": {"policyName": "p", "validationActions": list(actions)},
            },
        ]
    )


def _request(operation: str = "CREATE", obj: dict | None = None, resource=NAMESPACES) -> AdmissionRequest:
    obj = obj if obj is not None else {"metadata": {"name": "n"}}
    return AdmissionRequest(operation, User("u"), resource, "", "n", obj, None, None)


def test_a_validation_without_reason_or_message_is_invalid_naming_the_expression():
    with pytest.raises(ApiError) as err:
        _policies({"expression": "object.metadata.name == 'x'"}).admit(_request())
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert err.value.message == (
        "namespaces \"n\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: "
        "failed expression: object.metadata.name == 'x'"
    )


def test_an_expression_that_fails_denies_unless_the_failure_policy_ignores():
    broken = {"expression": "object.spec.missing == 1"}
    with pytest.raises(ApiError) as err:
        _policies(broken).admit(_request())
    assert "resulted in error" in err.value.message
    assert _policies(broken, failurePolicy="Ignore").admit(_request()) == []


def test_warn_actions_warn_instead_of_denying():
    warnings = _policies({"expression": "false", "message": "no"}, actions=("Warn",)).admit(_request())
    assert warnings == ["Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': no"]


def test_unmatched_requests_and_false_match_conditions_are_not_checked():
    policies = _policies(
        {"expression": "false"},
        matchConditions=[{"name": "c", "expression": "request.operation == 'DELETE'"}],
    )
    assert policies.admit(_request("CREATE")) == []
    assert policies.admit(_request("CREATE", resource=VIRTUAL_MACHINE_INSTANCES)) == []
    with pytest.raises(ApiError):
        policies.admit(_request("DELETE"))


@pytest.mark.parametrize(
    "spec",
    [
        {"validations": [{"expression": "object.metadata.labels[?'a'].orValue('') == ''"}]},
        {"validations": [{"expression": "true", "messageExpression": "'x'"}]},
        {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}},
        {"validations": [{"expression": "authorizer.group('').resource('pods').check('get').allowed()"}]},
        {"matchConstraints": {"namespaceSelector": {"matchLabels": {"a": "b"}}}},
    ],
    ids=["optional syntax", "messageExpression", "paramKind", "authorizer", "namespaceSelector"],
)
def test_what_the_local_cluster_cannot_evaluate_is_refused_when_loaded(spec):
    document = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "p"},
        "spec": {"validations": [{"expression": "true"}], **spec},
    }
    with pytest.raises(PolicyError):
        AdmissionPolicies.from_documents([document])


def test_a_policy_the_server_cannot_compile_stops_it(tmp_path):
    """Structure is checked before the server listens, CEL right after: either way it exits."""
    bad = tmp_path / "policies.yaml"
    bad.write_text(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n"
        "metadata: {name: p}\nspec:\n  validations:\n"
        "    - expression: \"object.metadata.labels[?'a'].orValue('') == ''\"\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster",
            "--state-dir",
            str(tmp_path / "state"),
            "--admission-policies",
            str(bad),
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "cel-python cannot parse" in result.stderr
