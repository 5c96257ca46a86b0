"""Fixtures of the deployment tests."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import Manifest, kustomization, render


@pytest.fixture(scope="session")
def rendered() -> list[Manifest]:
    return render(kustomization())
