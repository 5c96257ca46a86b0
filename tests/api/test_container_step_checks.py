"""Step checks on a container machine: through pods/exec on a real runc container (no SSH), the same
results, FAIL: line, time-out and not-running answers as on VMs."""

from __future__ import annotations

import time
import uuid

import pytest

from labs import cluster, lifecycle
from labs.models import Lab, LabInstance, LabMachine
from localcluster.containers import toolsimage
from localcluster.harness import start_local_cluster
from tests.labs.conftest import wait_until_running
from tests.localcluster_containers.container_helpers import TOOLS, missing
from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

pytestmark = pytest.mark.django_db(transaction=True)
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
SCRIPT = """
if [ -f /tmp/second-time ]; then echo "all good"; exit 0; fi
touch /tmp/second-time
echo "FAIL: no file /tmp/second-time yet"
echo "noise"
exit 1
"""


@pytest.fixture(scope="module")
def container_server(tmp_path_factory):
    if reason := missing():
        pytest.skip(reason)
    images = tmp_path_factory.mktemp("check-images")
    toolsimage.build(images, tag="1")
    with start_local_cluster(
        tmp_path_factory.mktemp("check-cluster"),
        extra_args=["--container-images", str(images), "--phase-delay-ms", "5", "--finalize-delay-ms", "10"],
    ) as server:
        yield server


@pytest.fixture
def setup(container_server, settings, student):
    settings.KUBECONFIG = str(container_server.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    settings.KUBE_REQUEST_TIMEOUT = 15.0  # the shared test machine is often loaded
    cluster.reset_client()
    tag = uuid.uuid4().hex[:8]
    lab = Lab.objects.create(name=f"L {tag}", slug=f"l-{tag}", namespace_prefix=f"s{tag}", published=True)
    LabMachine.objects.create(
        lab=lab, name="tools", kind="container", container_image=TOOLS, command=LOOP, cores=1, memory_mib=64
    )
    tutorial = Tutorial.objects.create(title="Checks", slug=f"checks-{tag}", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="One", order=0)
    step = Step.objects.create(page=page, order=0, text_markdown="Make it pass")
    StepCheck.objects.create(step=step, machine="tools", script=SCRIPT, timeout_seconds=3)
    instance = lifecycle.instance_start(user=student, lab=lab)
    wait_until_running(instance, timeout=20)
    yield {"tutorial": tutorial, "step": step, "instance": instance}
    instance.refresh_from_db()
    lifecycle.instance_stop(instance=instance)
    cluster.reset_client()


def press(client, setup):
    url = f"/api/tutorials/{setup['tutorial'].slug}/steps/{setup['step'].pk}/check/"
    return client.post(url, {"instance": setup["instance"].pk}, format="json")


def test_a_container_check_fails_then_passes_through_exec(setup, student, client_for):
    client = client_for(student)
    started = time.monotonic()
    first = press(client, setup).json()
    assert first["run"]["result"] == "failed", first
    assert first["run"]["message"] == "no file /tmp/second-time yet"
    second = press(client, setup).json()
    assert second["run"]["result"] == "passed" and second["verified"] is True
    assert time.monotonic() - started < 30


def test_a_container_check_that_never_ends_times_out(setup, student, client_for):
    StepCheck.objects.filter(step=setup["step"]).update(script="sleep 60")
    body = press(client_for(student), setup).json()
    assert body["run"]["result"] == "error" or body["run"]["result"] == "timed_out", body
    assert "did not finish within 3 seconds" in body["run"]["message"]


def test_a_container_that_does_not_run_is_not_a_failed_check(setup, student, client_for, container_server):
    from kubernetes import client as kube

    instance: LabInstance = setup["instance"]
    kube.CoreV1Api(container_server.api_client("admin")).delete_namespaced_pod("tools", instance.namespace)
    time.sleep(0.5)
    body = press(client_for(student), setup).json()
    assert "not running" in body["run"]["message"], body
