"""The RBAC model's names agree across the manifests, the admission policies and the app's code:
kustomize rewrites none of the strings inside CEL expressions, so a mismatch would only show on a
real cluster (as every start refused)."""

from __future__ import annotations

import re

from labs import manifests
from tests.deploy.manifests import Manifest, pod_spec


def find(rendered: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in rendered if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def expressions(policy: Manifest) -> str:
    spec = policy["spec"]
    return " ".join(e["expression"] for e in spec.get("matchConditions", []) + spec["validations"])


def test_the_policies_name_the_service_account_the_manifests_install(rendered):
    (account,) = find(rendered, "ServiceAccount")
    user = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    policies = find(rendered, "ValidatingAdmissionPolicy")
    assert len(policies) == 5
    for policy in policies:
        assert re.findall(r"system:serviceaccount:[^']*", expressions(policy)) == [user]
    (bindings_policy,) = find(rendered, "ValidatingAdmissionPolicy", "laborchestrator-rolebindings")
    text = expressions(bindings_policy)
    assert f"s.name == '{account['metadata']['name']}'" in text
    assert f"s.namespace == '{account['metadata']['namespace']}'" in text


def test_every_policy_has_a_denying_binding(rendered):
    policies = {p["metadata"]["name"] for p in find(rendered, "ValidatingAdmissionPolicy")}
    bound = {
        b["spec"]["policyName"]
        for b in find(rendered, "ValidatingAdmissionPolicyBinding")
        if b["spec"]["validationActions"] == ["Deny"]
    }
    assert bound == policies


def test_the_lab_role_is_the_one_the_app_binds_and_the_only_one_it_may(rendered):
    role = manifests.LAB_CLUSTER_ROLE
    assert find(rendered, "ClusterRole", role)
    (app_role,) = find(rendered, "ClusterRole", "laborchestrator")
    bind_rules = [r for r in app_role["rules"] if "bind" in r["verbs"]]
    assert bind_rules == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": [role],
        }
    ]
    (bindings_policy,) = find(rendered, "ValidatingAdmissionPolicy", "laborchestrator-rolebindings")
    assert f"object.roleRef.name == '{role}'" in expressions(bindings_policy)


def test_nothing_but_namespaces_binding_and_reading_vmis_and_pods_is_granted_cluster_wide(rendered):
    (binding,) = find(rendered, "ClusterRoleBinding")
    (role,) = find(rendered, "ClusterRole", binding["roleRef"]["name"])
    resources = {resource for rule in role["rules"] for resource in rule["resources"]}
    assert resources == {"namespaces", "rolebindings", "clusterroles", "virtualmachineinstances", "pods"}
    # The watcher's (labs/watcher.py): VMIs and pods are only read cluster-wide, never written.
    for kind in ("virtualmachineinstances", "pods"):
        verbs = {v for rule in role["rules"] if kind in rule["resources"] for v in rule["verbs"]}
        assert verbs == {"list", "watch"}
    assert not find(rendered, "ClusterRoleBinding", manifests.LAB_CLUSTER_ROLE)


def test_the_policies_use_the_label_the_app_puts_on_its_namespaces(rendered):
    label = f"'{manifests.MANAGED_BY_LABEL}'"
    value = f"== '{manifests.MANAGED_BY}'"
    for name in ("laborchestrator-namespaces", "laborchestrator-rolebindings"):
        (policy,) = find(rendered, "ValidatingAdmissionPolicy", name)
        assert label in expressions(policy) and value in expressions(policy)


def test_the_pods_that_call_the_cluster_know_their_own_account(rendered):
    (account,) = find(rendered, "ServiceAccount")
    for workload in find(rendered, "Deployment", "laborchestrator") + find(rendered, "CronJob"):
        spec = pod_spec(workload)
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        env = {e["name"]: e.get("valueFrom") for e in spec["containers"][0]["env"]}
        assert env["KUBE_SERVICE_ACCOUNT_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert env["KUBE_SERVICE_ACCOUNT_NAME"] == {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}
