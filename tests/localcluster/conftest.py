"""Fixtures for the local cluster's own tests: clients per identity, a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.localcluster.lc_helpers import Vmis


@pytest.fixture(scope="session")
def admin_api(local_cluster) -> client.ApiClient:
    return local_cluster.api_client("admin")


@pytest.fixture(scope="session")
def core(admin_api) -> client.CoreV1Api:
    return client.CoreV1Api(admin_api)


@pytest.fixture(scope="session")
def custom(admin_api) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(admin_api)


@pytest.fixture(scope="session")
def vmis(custom) -> Vmis:
    return Vmis(custom)


@pytest.fixture
def ns(core) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the way Lab Orchestrator isolates instances)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
