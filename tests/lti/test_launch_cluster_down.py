"""An LTI launch works while the cluster is unreachable: it signs the learner in and lands on the
embedded lab; only starting the lab needs the cluster (tests/labs/test_cluster_outage.py)."""

from __future__ import annotations

import pytest

from labs import cluster
from localcluster.harness import start_local_cluster

pytestmark = pytest.mark.django_db


@pytest.fixture
def cluster_gone(tmp_path, settings):
    """The app's settings point at a local cluster that has stopped (connections are refused)."""
    with start_local_cluster(tmp_path / "lc", runtime="none") as gone:
        settings.KUBECONFIG = str(gone.kubeconfig)
        settings.KUBE_CONTEXT = "laborchestrator"
        settings.KUBE_IN_CLUSTER = False
        settings.KUBE_REQUEST_TIMEOUT = 2.0
    cluster.reset_client()
    yield
    cluster.reset_client()


def test_launch_signs_in_and_shows_the_lab_with_the_cluster_down(
    client, platform, lab, do_launch, cluster_gone
):
    response = do_launch(client)
    assert response.status_code == 302
    assert response["Location"] == "/embed/labs/explore/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Explore the network" in page.content
    assert page.context["user"].is_authenticated
