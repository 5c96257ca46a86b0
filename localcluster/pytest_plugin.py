"""pytest fixtures: one local cluster per test session, faults cleared after each test that used it.

Enabled for the whole suite by `pytest_plugins = ["localcluster.pytest_plugin"]` in tests/conftest.py.
Tests isolate themselves by creating uniquely named namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localcluster.harness import FaultControl, LocalCluster, start_local_cluster
from localcluster.registry.server import Registry, run_registry

__all__ = [
    "FaultControl",
    "LocalCluster",
    "Registry",
    "local_cluster",
    "oci_registry",
    "start_local_cluster",
    "start_oci_registry",
]

# Fast timers: VMIs reach Running in ~15 ms, deleted namespaces vanish in ~10 ms, and a VMI's Paused
# condition follows a pause 20 ms after the answer (a window the app must cope with, kept short).
FIXTURE_ARGS = ("--phase-delay-ms", "5", "--finalize-delay-ms", "10", "--pause-condition-delay-ms", "20")


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_local_cluster(
        tmp_path_factory.mktemp("localcluster"), runtime="none", extra_args=FIXTURE_ARGS
    ) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _local_cluster_faults_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "local_cluster" in request.fixturenames:
        request.getfixturevalue("local_cluster").faults.clear()


# -- OCI registries (localcluster/registry/server.py) ----------------------------------------------------
@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on loopback, anonymous; `oci_registry.push_layout(layout, "name:tag")`."""
    _require_registry_tools()
    with run_registry(tmp_path_factory.mktemp("oci-registry")) as registry:
        yield registry


@pytest.fixture
def start_oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    """Start more registries for one test: `start_oci_registry(users={"ann": "pw"}, auth="token")`."""
    _require_registry_tools()
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> Registry:
            return stack.enter_context(run_registry(tmp_path_factory.mktemp("oci-registry"), **options))

        yield start


def _require_registry_tools() -> None:
    import os
    import shutil

    for tool, package in (
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("htpasswd", "apache2-utils"),
    ):
        if shutil.which(tool) is None:
            message = f"needs {tool}: apt-get install {package}"
            if os.getenv("LABORCHESTRATOR_REQUIRE_ALL_TESTS") == "1":
                pytest.fail(message)
            pytest.skip(message)
