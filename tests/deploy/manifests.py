"""The manifests in deploy/k8s, as files and as kustomize renders them (a tiny renderer, no kubectl)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
# A template for operators; deliberately not a resource of the kustomization.
SECRET_TEMPLATE = K8S_DIR / "secret.example.yaml"
# Kinds whose objects live in no namespace, so kustomize's `namespace:` leaves them alone.
# Not ValidatingAdmissionPolicy(Binding): kustomize's built-in schema predates them and sets the
# namespace on them too, which the API server drops for a cluster-scoped kind (rest.BeforeCreate).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

Manifest = dict[str, Any]


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S_DIR.glob("*.yaml") if path != KUSTOMIZATION)


def kustomization() -> dict[str, Any]:
    return yaml.safe_load(KUSTOMIZATION.read_text())


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod template's spec of a workload, or None for other kinds."""
    kind, spec = manifest["kind"], manifest.get("spec", {})
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        return spec["template"]["spec"]
    if kind == "Pod":
        return spec
    return None


def _rewrite_image(image: str, images: list[dict[str, str]]) -> str:
    name, _, tag = image.partition(":")
    for rule in images:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return image


def render(config: dict[str, Any]) -> list[Manifest]:
    """The subset of `kustomize build` this kustomization uses: resources, `namespace` and `images`."""
    rendered = []
    for resource in config["resources"]:
        for document in load_documents(K8S_DIR / resource):
            document = copy.deepcopy(document)
            if config.get("namespace") and document["kind"] not in CLUSTER_SCOPED:
                document["metadata"]["namespace"] = config["namespace"]
            spec = pod_spec(document)
            if spec is not None:
                for container in spec.get("initContainers", []) + spec["containers"]:
                    container["image"] = _rewrite_image(container["image"], config.get("images", []))
            rendered.append(document)
    return rendered


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
