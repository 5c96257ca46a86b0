"""A local cluster that runs pods as real runc containers (root, runc, umoci, vde2, dnsmasq)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster.containers import toolsimage
from localcluster.harness import LocalCluster, start_local_cluster
from tests.localcluster_containers.container_helpers import missing


@pytest.fixture(scope="session")
def tools_images(tmp_path_factory: pytest.TempPathFactory):
    if reason := missing():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("container-images")
    toolsimage.build(folder, tag="1")
    return folder


@pytest.fixture(scope="module")
def container_cluster(tmp_path_factory: pytest.TempPathFactory, tools_images) -> Iterator[LocalCluster]:
    with start_local_cluster(
        tmp_path_factory.mktemp("container-cluster"),
        extra_args=[
            "--container-images",
            str(tools_images),
            "--phase-delay-ms",
            "5",
            "--finalize-delay-ms",
            "10",
        ],
    ) as cluster:
        yield cluster
