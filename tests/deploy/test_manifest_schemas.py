"""Every manifest is valid Kubernetes for the pinned version, unknown fields included."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.manifests import load_documents, manifest_files

KUBERNETES_VERSION = "1.37"


def validation_errors(path: Path) -> list[str]:
    errors = []
    for document in load_documents(path):
        try:
            kubernetes_validate.validate(document, desired_version=KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
            errors.append(f"{path.name} {name}: {error.message} at {list(error.absolute_path)}")
    return errors


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    assert load_documents(path), f"{path.name} holds no manifest"
    assert validation_errors(path) == []


def test_the_validator_refuses_unknown_fields(tmp_path: Path) -> None:
    # Strict mode is what catches a misspelt field, which Kubernetes would silently drop.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 80}], readinessProbe: {}}\n"
    )
    assert validation_errors(bad) != []
