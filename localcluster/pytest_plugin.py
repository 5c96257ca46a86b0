"""pytest fixtures: one local cluster per test session, faults cleared after each test that used it.

Enabled for the whole suite by `pytest_plugins = ["localcluster.pytest_plugin"]` in tests/conftest.py.
Tests isolate themselves by creating uniquely named namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster.harness import FaultControl, LocalCluster, start_local_cluster

__all__ = ["FaultControl", "LocalCluster", "local_cluster", "start_local_cluster"]

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
