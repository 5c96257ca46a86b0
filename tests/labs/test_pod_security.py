"""On a cluster that enforces Pod Security `baseline` by default, labs run because their namespaces
are labelled `privileged` (LABS_POD_SECURITY_ENFORCE); without the label the start fails, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from labs import cluster, lifecycle
from labs.models import LabInstance
from localcluster.harness import LocalCluster, start_local_cluster
from localcluster.pytest_plugin import FIXTURE_ARGS
from tests.labs.conftest import wait_for, wait_until_running


@pytest.fixture(scope="module")
def baseline_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_local_cluster(
        tmp_path_factory.mktemp("baseline"),
        runtime="none",
        extra_args=(*FIXTURE_ARGS, "--pod-security-default", "baseline"),
    ) as local:
        yield local


@pytest.fixture
def app_on_baseline(baseline_cluster, settings) -> Iterator[LocalCluster]:
    settings.KUBECONFIG = str(baseline_cluster.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    cluster.reset_client()
    yield baseline_cluster
    cluster.reset_client()


@pytest.mark.django_db
def test_lab_namespaces_are_privileged_so_the_machines_run(app_on_baseline, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    status = wait_until_running(instance)
    assert [m.phase for m in status.machines] == ["Running", "Running"]
    namespace = client.CoreV1Api(app_on_baseline.api_client("admin")).read_namespace(instance.namespace)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.django_db
def test_without_the_label_the_start_fails_saying_why(app_on_baseline, make_lab, student, settings):
    settings.LABS_POD_SECURITY_ENFORCE = ""
    instance = lifecycle.instance_start(user=student, lab=make_lab())

    def failed() -> lifecycle.InstanceStatus | None:
        status = lifecycle.instance_refresh(instance=instance)
        return status if status.status == LabInstance.Status.FAILED else None

    wait_for(failed)
    instance.refresh_from_db()
    # Staff read the cluster's words; the student is told the cluster refused the machine.
    assert "it needs a privileged namespace to run" in instance.last_error
    assert instance.last_error_plain == "The cluster refused to create the machine vm0. Tell your instructor."
    lifecycle.instance_stop(instance=instance)
