"""RBAC: the server enforces the ClusterRole in deploy/k8s/rbac.yaml for the app's service account,
denies everything to `nobody`, and answers 401 to unknown tokens - with real Status messages.

The expectations for `laborchestrator` are read from the same file (it is edited as the code's needs
change), so this test checks enforcement, not the file's current contents.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from localcluster.rbac import Authorizer, RequestAttributes, User, service_account_user
from tests.localcluster.lc_helpers import call, small_vmi, status_of

RBAC_FILE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "rbac.yaml"
APP_USER = "system:serviceaccount:laborchestrator:laborchestrator"


def granted() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the app's ClusterRole lists, read plainly from the file."""
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "laborchestrator")
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_the_manifest_binds_the_role_to_the_service_account():
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "laborchestrator", "namespace": "laborchestrator"}
    ]


# Each probe: (group, resource, verb, how to call it as a given client).
def _probes(ns: str):
    def core(api):
        return client.CoreV1Api(api)

    def custom(api):
        return client.CustomObjectsApi(api)

    return [
        ("", "namespaces", "list", lambda api: core(api).list_namespace()),
        ("", "namespaces", "get", lambda api: core(api).read_namespace(ns)),
        ("", "secrets", "list", lambda api: core(api).list_namespaced_secret(ns)),
        (
            "",
            "secrets",
            "create",
            lambda api: core(api).create_namespaced_secret(ns, {"metadata": {"generateName": "s-"}}),
        ),
        ("", "resourcequotas", "list", lambda api: core(api).list_namespaced_resource_quota(ns)),
        ("", "events", "list", lambda api: core(api).list_namespaced_event(ns)),
        ("", "services", "list", lambda api: core(api).list_namespaced_service(ns)),
        (
            "networking.k8s.io",
            "networkpolicies",
            "list",
            lambda api: client.NetworkingV1Api(api).list_namespaced_network_policy(ns),
        ),
        (
            "kubevirt.io",
            "virtualmachineinstances",
            "list",
            lambda api: custom(api).list_namespaced_custom_object(
                "kubevirt.io", "v1", ns, "virtualmachineinstances"
            ),
        ),
        (
            "kubevirt.io",
            "virtualmachineinstances",
            "create",
            lambda api: custom(api).create_namespaced_custom_object(
                "kubevirt.io", "v1", ns, "virtualmachineinstances", small_vmi("probe")
            ),
        ),
        (
            "kubevirt.io",
            "virtualmachineinstances",
            "get",
            lambda api: custom(api).get_namespaced_custom_object(
                "kubevirt.io", "v1", ns, "virtualmachineinstances", "x"
            ),
        ),
        (
            "subresources.kubevirt.io",
            "virtualmachineinstances/pause",
            "update",
            lambda api: call(
                api,
                "PUT",
                f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/x/pause",
                {},
            ),
        ),
    ]


def test_the_app_identity_may_do_exactly_what_the_role_grants(local_cluster, ns):
    api = local_cluster.api_client("laborchestrator")
    rules = granted()
    for group, resource, verb, probe in _probes(ns):
        allowed = (group, resource, verb) in rules
        try:
            probe(api)
            outcome = "allowed"
        except client.ApiException as exc:
            # 404 means the call got past authorization (the object simply does not exist).
            outcome = (
                "allowed" if exc.status == 404 else ("denied" if exc.status == 403 else f"error {exc.status}")
            )
        assert outcome == ("allowed" if allowed else "denied"), (group, resource, verb)


def test_forbidden_answers_name_the_user_verb_resource_group_and_namespace(local_cluster, ns):
    nobody = client.CustomObjectsApi(local_cluster.api_client("nobody"))
    with pytest.raises(client.exceptions.ForbiddenException) as err:
        nobody.create_namespaced_custom_object(
            "kubevirt.io", "v1", ns, "virtualmachineinstances", small_vmi("v")
        )
    status = status_of(err.value)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'virtualmachineinstances.kubevirt.io is forbidden: User "nobody" cannot create resource '
        f'"virtualmachineinstances" in API group "kubevirt.io" in the namespace "{ns}"'
    )
    assert status["details"] == {"group": "kubevirt.io", "kind": "virtualmachineinstances"}


def test_nobody_is_denied_everything_but_discovery(local_cluster, ns):
    api = local_cluster.api_client("nobody")
    for _group, _resource, _verb, probe in _probes(ns):
        with pytest.raises(client.exceptions.ForbiddenException):
            probe(api)
    assert client.VersionApi(api).get_code().minor == "37"
    assert client.CoreV1Api(api).get_api_resources().group_version == "v1"


def test_cluster_scoped_denials_say_at_the_cluster_scope(local_cluster):
    with pytest.raises(client.exceptions.ForbiddenException) as err:
        client.CoreV1Api(local_cluster.api_client("nobody")).list_namespace()
    assert status_of(err.value)["message"].endswith(
        'cannot list resource "namespaces" in API group "" at the cluster scope'
    )


def test_an_unknown_token_is_401(local_cluster):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        local_cluster.url + "/api/v1/namespaces", headers={"Authorization": "Bearer not-a-token"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=local_cluster.ssl_context(), timeout=10)
    assert err.value.code == 401
    assert b'"reason": "Unauthorized"' in err.value.read()


# -- the authorizer's rule semantics, without a server ---------------------------------------------
def _attrs(user: User, verb: str, group: str, resource: str, sub: str = "", ns: str = "x", name: str = ""):
    return RequestAttributes(user, verb, True, group, resource, sub, ns, name)


def test_wildcards_subresources_resource_names_and_role_bindings():
    alice = User("alice", ("system:authenticated", "devs"))
    sa = service_account_user("apps", "runner")
    authorizer = Authorizer.from_documents(
        [
            {
                "kind": "ClusterRole",
                "metadata": {"name": "wide"},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "resourceNames": ["only-this"],
                        "verbs": ["*"],
                    },
                ],
            },
            {
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "b1"},
                "roleRef": {"kind": "ClusterRole", "name": "wide"},
                "subjects": [{"kind": "Group", "name": "devs"}],
            },
            {
                "kind": "Role",
                "metadata": {"name": "local", "namespace": "apps"},
                "rules": [
                    {
                        "apiGroups": ["kubevirt.io"],
                        "resources": ["virtualmachineinstances"],
                        "verbs": ["list"],
                    }
                ],
            },
            {
                "kind": "RoleBinding",
                "metadata": {"name": "b2", "namespace": "apps"},
                "roleRef": {"kind": "Role", "name": "local"},
                "subjects": [{"kind": "ServiceAccount", "name": "runner"}],
            },
        ]
    )
    assert authorizer.allows(
        _attrs(alice, "get", "kubevirt.io", "virtualmachineinstances", "status", name="v")
    )
    assert not authorizer.allows(_attrs(alice, "get", "kubevirt.io", "virtualmachineinstances", name="v"))
    assert authorizer.allows(_attrs(alice, "delete", "", "secrets", name="only-this"))
    assert not authorizer.allows(_attrs(alice, "delete", "", "secrets", name="other"))
    assert not authorizer.allows(_attrs(alice, "create", "", "secrets"))  # resourceNames never match create
    assert authorizer.allows(_attrs(sa, "list", "kubevirt.io", "virtualmachineinstances", ns="apps"))
    assert not authorizer.allows(_attrs(sa, "list", "kubevirt.io", "virtualmachineinstances", ns="other"))
    masters = User("root", ("system:masters",))
    assert authorizer.allows(_attrs(masters, "delete", "", "namespaces", ns=""))
