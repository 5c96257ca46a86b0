"""`kubectl apply -k deploy/k8s` installs every manifest, in the right namespace, with the release image."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from localcluster import app as localcluster_app
from tests.deploy.manifests import (
    CLUSTER_SCOPED,
    K8S_DIR,
    KUSTOMIZATION,
    SECRET_TEMPLATE,
    Manifest,
    find,
    kustomization,
    load_documents,
    manifest_files,
    pod_spec,
)

NAMESPACE = "laborchestrator"


def test_every_manifest_is_a_resource_except_the_secret_template() -> None:
    resources = kustomization()["resources"]
    assert sorted(resources) == sorted(p.name for p in manifest_files() if p != SECRET_TEMPLATE)
    assert SECRET_TEMPLATE.name not in resources
    assert len(resources) == len(set(resources))


def test_namespaced_objects_land_in_the_app_namespace(rendered: list[Manifest]) -> None:
    assert kustomization()["namespace"] == NAMESPACE
    find(rendered, "Namespace", NAMESPACE)
    for manifest in rendered:
        namespace = manifest["metadata"].get("namespace")
        if manifest["kind"] in CLUSTER_SCOPED:
            assert namespace is None, manifest["metadata"]["name"]
        else:
            assert namespace == NAMESPACE, manifest["metadata"]["name"]


def test_names_are_unique_per_kind(rendered: list[Manifest]) -> None:
    keys = [(m["kind"], m["metadata"]["name"]) for m in rendered]
    assert len(keys) == len(set(keys))


def test_app_containers_run_the_release_image(rendered: list[Manifest]) -> None:
    rule = next(r for r in kustomization()["images"] if r["name"] == "laborchestrator")
    release = f"{rule['newName']}:{rule['newTag']}"
    app_images = {
        container["image"]
        for manifest in rendered
        if (spec := pod_spec(manifest)) is not None
        for container in spec["containers"]
        if manifest["metadata"]["name"].startswith("laborchestrator")
    }
    assert app_images == {release}
    # Every image is pinned to a tag: nothing runs ":latest" by accident.
    for manifest in rendered:
        if (spec := pod_spec(manifest)) is not None:
            for container in spec["containers"]:
                assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_rbac_is_exactly_the_file_the_local_cluster_enforces(rendered: list[Manifest]) -> None:
    # The test suite's cluster authorises every call by this file, so the tests prove the role suffices.
    assert localcluster_app.DEFAULT_RBAC.resolve() == (K8S_DIR / "rbac.yaml").resolve()
    rbac_kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    rendered_rbac = [m for m in rendered if m["kind"] in rbac_kinds]
    assert rendered_rbac == load_documents(K8S_DIR / "rbac.yaml")


def test_workloads_that_call_the_cluster_use_the_app_service_account(rendered: list[Manifest]) -> None:
    service_account = find(rendered, "ServiceAccount", "laborchestrator")["metadata"]["name"]
    for kind, name in [("Deployment", "laborchestrator"), ("CronJob", "laborchestrator-housekeeping")]:
        assert pod_spec(find(rendered, kind, name))["serviceAccountName"] == service_account
    # Everything else gets no token at all.
    for kind, name in [
        ("StatefulSet", "postgres"),
        ("Deployment", "redis"),
        ("Job", "laborchestrator-migrate"),
    ]:
        assert pod_spec(find(rendered, kind, name))["automountServiceAccountToken"] is False


def test_kubectl_kustomize_renders_the_same_objects(rendered: list[Manifest]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the built-in renderer above checked the kustomization")
    output = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATION.parent)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    built = [doc for doc in yaml.safe_load_all(output) if doc]
    key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731
    assert sorted(built, key=key) == sorted(rendered, key=key)
