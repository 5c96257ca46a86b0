"""Conformance: namespaced RBAC. RoleBindings are served through the API, grant at once, stop granting
when deleted or when their namespace goes, and creating one is checked against escalation.

Upstream: pkg/registry/rbac/rolebinding/policybased/storage.go (the check before storage),
pkg/registry/rbac/escalation_check.go (`bind` on the role in the binding's namespace),
pkg/registry/rbac/validation/rule.go (ConfirmNoEscalation's message), policy_compact.go,
staging/src/k8s.io/component-helpers/auth/rbac/validation/policy_comparator.go (Covers),
pkg/apis/rbac/validation/validation.go (roleRef and subjects, "cannot change roleRef").
All through the official client over HTTPS, as the app's service account or as admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from localcluster.harness import LocalCluster, start_local_cluster
from localcluster.pytest_plugin import FIXTURE_ARGS
from localcluster.rbac import Authorizer, PolicyRule, User, service_account_user
from tests.localcluster.lc_helpers import small_vmi, status_of, wait_for

APP_USER = "system:serviceaccount:laborchestrator:laborchestrator"
APP_GROUPS = '["system:serviceaccounts" "system:serviceaccounts:laborchestrator" "system:authenticated"]'
LAB_ROLE = "laborchestrator-lab"
MANAGED = {"app.kubernetes.io/managed-by": "laborchestrator"}


def binding(name: str, role: str = LAB_ROLE, subjects: list[dict] | None = None) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects
        if subjects is not None
        else [{"kind": "ServiceAccount", "name": "laborchestrator", "namespace": "laborchestrator"}],
    }


def secret(name: str = "s") -> dict:
    return {"metadata": {"name": name}, "stringData": {"k": "v"}}


@pytest.fixture(scope="module")
def app_api(local_cluster) -> client.ApiClient:
    return local_cluster.api_client("laborchestrator")


@pytest.fixture
def lab_ns(core) -> Iterator[str]:
    """A namespace labelled as the app labels its own (created by admin here)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_a_create_in_a_namespace_without_a_binding_is_refused(app_api, lab_ns):
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(app_api).create_namespaced_secret(lab_ns, secret())
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        f'secrets is forbidden: User "{APP_USER}" cannot create resource "secrets" in API group "" '
        f'in the namespace "{lab_ns}"'
    )


def test_a_role_binding_grants_in_its_namespace_at_once_and_only_there(app_api, lab_ns, core):
    rbac = client.RbacAuthorizationV1Api(app_api)
    created = rbac.create_namespaced_role_binding(lab_ns, binding("lab"))
    assert (created.metadata.namespace, created.role_ref.name) == (lab_ns, LAB_ROLE)

    app_core = client.CoreV1Api(app_api)
    assert app_core.create_namespaced_secret(lab_ns, secret()).metadata.name == "s"
    vmis = client.CustomObjectsApi(app_api)
    vmis.create_namespaced_custom_object(
        "kubevirt.io", "v1", lab_ns, "virtualmachineinstances", small_vmi("vm")
    )
    assert (
        len(
            vmis.list_namespaced_custom_object("kubevirt.io", "v1", lab_ns, "virtualmachineinstances")[
                "items"
            ]
        )
        == 1
    )

    other = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": other, "labels": MANAGED}})
    try:
        with pytest.raises(client.ApiException) as err:
            app_core.create_namespaced_secret(other, secret())
        assert err.value.status == 403
    finally:
        core.delete_namespace(other)


def test_deleting_the_binding_takes_the_grant_away(app_api, lab_ns, admin_api):
    client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(lab_ns, binding("lab"))
    app_core = client.CoreV1Api(app_api)
    app_core.create_namespaced_secret(lab_ns, secret("before"))

    client.RbacAuthorizationV1Api(admin_api).delete_namespaced_role_binding("lab", lab_ns)

    with pytest.raises(client.ApiException) as err:
        app_core.create_namespaced_secret(lab_ns, secret("after"))
    assert err.value.status == 403


def test_the_binding_is_gone_with_its_namespace(app_api, core, admin_api):
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(name, binding("lab"))
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=10)
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    try:
        assert client.RbacAuthorizationV1Api(admin_api).list_namespaced_role_binding(name).items == []
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(app_api).create_namespaced_secret(name, secret())
        assert err.value.status == 403
    finally:
        core.delete_namespace(name)


def test_binding_another_cluster_role_is_an_escalation(app_api, lab_ns, admin_api):
    with pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(
            lab_ns, binding("admin", role="cluster-admin")
        )
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        f'rolebindings.rbac.authorization.k8s.io "admin" is forbidden: user "{APP_USER}" '
        f"(groups={APP_GROUPS}) is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}\n'
        '{NonResourceURLs:["*"], Verbs:["*"]}'
    )
    assert status["details"] == {
        "name": "admin",
        "group": "rbac.authorization.k8s.io",
        "kind": "rolebindings",
    }
    assert client.RbacAuthorizationV1Api(admin_api).list_namespaced_role_binding(lab_ns).items == []


def test_binding_a_role_that_does_not_exist_is_not_found(app_api, lab_ns):
    with pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(app_api).create_namespaced_role_binding(
            lab_ns, binding("x", role="nope")
        )
    status = status_of(err.value)
    assert (err.value.status, status["message"]) == (
        404,
        'clusterroles.rbac.authorization.k8s.io "nope" not found',
    )


def test_the_nobody_user_may_not_create_role_bindings(local_cluster, lab_ns):
    with pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(local_cluster.api_client("nobody")).create_namespaced_role_binding(
            lab_ns, binding("x")
        )
    assert status_of(err.value)["message"] == (
        'rolebindings.rbac.authorization.k8s.io is forbidden: User "nobody" cannot create resource '
        f'"rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "{lab_ns}"'
    )


def test_role_ref_cannot_change(admin_api, ns):
    rbac = client.RbacAuthorizationV1Api(admin_api)
    rbac.create_namespaced_role_binding(ns, binding("b"))
    with pytest.raises(client.ApiException) as err:
        rbac.patch_namespaced_role_binding("b", ns, {"roleRef": {"name": "laborchestrator"}})
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "roleRef"
    assert "cannot change roleRef" in status["message"]
    # Subjects may change.
    patched = rbac.patch_namespaced_role_binding("b", ns, {"subjects": [{"kind": "User", "name": "alice"}]})
    assert patched.subjects[0].api_group == "rbac.authorization.k8s.io"  # defaulted, as v1 does


def test_role_ref_kind_and_subject_kind_are_validated(admin_api, ns):
    body = binding("b", subjects=[{"kind": "Robot", "name": "r"}])
    body["roleRef"]["kind"] = "Policy"
    with pytest.raises(client.ApiException) as err:
        client.RbacAuthorizationV1Api(admin_api).create_namespaced_role_binding(ns, body)
    status = status_of(err.value)
    assert err.value.status == 422
    assert {c["field"] for c in status["details"]["causes"]} == {"roleRef.kind", "subjects[0].kind"}
    assert 'Unsupported value: "Policy": supported values: "Role", "ClusterRole"' in status["message"]


def test_discovery_serves_role_bindings(admin_api):
    resources = client.RbacAuthorizationV1Api(admin_api).get_api_resources().resources
    assert [(r.name, r.namespaced, r.kind) for r in resources] == [("rolebindings", True, "RoleBinding")]


# -- the escalation rules, without a server --------------------------------------------------------
def _authorizer(*rules: dict, bind: list[str] | None = None) -> Authorizer:
    own = list(rules) + (
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "verbs": ["bind"],
                "resourceNames": bind,
            }
        ]
        if bind
        else []
    )
    return Authorizer.from_documents(
        [
            {"kind": "ClusterRole", "metadata": {"name": "own"}, "rules": own},
            {
                "kind": "ClusterRole",
                "metadata": {"name": "wanted"},
                "rules": [
                    {
                        "apiGroups": ["kubevirt.io"],
                        "resources": ["virtualmachineinstances"],
                        "verbs": ["create", "list"],
                    },
                    {
                        "apiGroups": ["subresources.kubevirt.io"],
                        "resources": ["virtualmachineinstances/vnc"],
                        "verbs": ["get"],
                    },
                ],
            },
            {
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "own"},
                "roleRef": {"kind": "ClusterRole", "name": "own"},
                "subjects": [{"kind": "User", "name": "u"}],
            },
        ]
    )


WANTED = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wanted"}
USER = User("u", ("system:authenticated",))


def test_holding_every_permission_of_the_role_is_enough_without_bind():
    authorizer = _authorizer(
        {"apiGroups": ["kubevirt.io"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": ["subresources.kubevirt.io"], "resources": ["*/vnc"], "verbs": ["get"]},
    )
    assert authorizer.escalation_refusal(USER, "ns", WANTED) is None


def test_bind_on_the_role_by_name_is_enough_and_only_for_that_name():
    authorizer = _authorizer(bind=["wanted"])
    assert authorizer.escalation_refusal(USER, "ns", WANTED) is None
    assert authorizer.escalation_refusal(USER, "ns", {**WANTED, "name": "cluster-admin"}) is not None


def test_missing_permissions_are_listed_compactly_and_sorted():
    authorizer = _authorizer(
        {
            "apiGroups": ["kubevirt.io"],
            "resources": ["virtualmachineinstances"],
            "verbs": ["list"],
            "resourceNames": ["x"],
        }
    )
    refusal = authorizer.escalation_refusal(USER, "ns", WANTED)
    assert refusal == (
        'user "u" (groups=["system:authenticated"]) is attempting to grant RBAC permissions '
        "not currently held:\n"
        '{APIGroups:["kubevirt.io"], Resources:["virtualmachineinstances"], Verbs:["create" "list"]}\n'
        '{APIGroups:["subresources.kubevirt.io"], Resources:["virtualmachineinstances/vnc"], Verbs:["get"]}'
    )


def test_a_role_binding_in_the_namespace_counts_towards_what_the_user_holds():
    authorizer = _authorizer()
    wanted_rules = authorizer.cluster_roles["wanted"]
    authorizer.role_bindings_in = lambda ns: (
        [
            {
                "kind": "RoleBinding",
                "metadata": {"name": "b", "namespace": "lab"},
                "roleRef": {"kind": "ClusterRole", "name": "wanted"},
                "subjects": [{"kind": "User", "name": "u"}],
            }
        ]
        if ns == "lab"
        else []
    )
    assert authorizer.escalation_refusal(USER, "lab", WANTED) is None
    assert authorizer.escalation_refusal(USER, "elsewhere", WANTED) is not None
    assert all(isinstance(rule, PolicyRule) for rule in wanted_rules)


def test_service_account_subjects_without_a_namespace_mean_the_bindings_namespace():
    authorizer = _authorizer()
    sa = service_account_user("lab", "runner")
    authorizer.role_bindings_in = lambda ns: [
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": ns},
            "roleRef": {"kind": "ClusterRole", "name": "wanted"},
            "subjects": [{"kind": "ServiceAccount", "name": "runner"}],
        }
    ]
    assert authorizer.rules_for(sa, "lab")
    assert not authorizer.rules_for(sa, "other")


# -- propagation: the authorizer learns of a new binding a moment after the create -----------------
@pytest.fixture(scope="module")
def lagging_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_local_cluster(
        tmp_path_factory.mktemp("lagging"),
        runtime="none",
        extra_args=(*FIXTURE_ARGS, "--rbac-propagation-ms", "400"),
    ) as local:
        yield local


def test_a_new_binding_grants_only_once_the_authorizer_has_seen_it(lagging_cluster):
    """kube-apiserver's RBAC authorizer reads an informer cache; Kubernetes' e2e framework polls
    up to 5 s after a bind (test/e2e/framework/auth/helpers.go, WaitForNamedAuthorizationUpdate)."""
    admin_core = client.CoreV1Api(lagging_cluster.api_client("admin"))
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin_core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    app = lagging_cluster.api_client("laborchestrator")
    client.RbacAuthorizationV1Api(app).create_namespaced_role_binding(name, binding("lab"))

    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(app).create_namespaced_secret(name, secret("early"))
    assert err.value.status == 403

    def created() -> bool:
        try:
            client.CoreV1Api(app).create_namespaced_secret(name, secret("later"))
        except client.ApiException as exc:
            assert exc.status == 403
            return False
        return True

    wait_for(created, timeout=10, interval=0.05)
