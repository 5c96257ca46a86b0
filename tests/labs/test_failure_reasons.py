"""A start that cannot succeed fails with the cluster's reason (for staff) and plain words (for the
student), at once when waiting cannot help; one that may still succeed waits and says why.
Against the local cluster, which reports each case as a real one does
(tests/localcluster/test_launcher_pod.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from labs import lifecycle
from labs.models import LabInstance, VMImage
from tests.labs.conftest import namespace_exists, wait_for, wait_until_running

pytestmark = pytest.mark.django_db
Status = LabInstance.Status
INTERNALS = ("127.0.0.1", "HTTPSConnectionPool", "urllib3", "Read timed out", "rpc error", "virt-launcher")


def refresh_until_settled(instance: LabInstance, timeout: float = 15.0) -> lifecycle.InstanceStatus:
    """Refresh until the instance fails or runs (a start that hangs fails the test)."""

    def settled() -> lifecycle.InstanceStatus | None:
        status = lifecycle.instance_refresh(instance=instance)
        return status if status.status in (Status.FAILED, Status.RUNNING) else None

    return wait_for(settled, timeout)


def assert_plain(text: str) -> None:
    assert text
    for internal in INTERNALS:
        assert internal not in text, f"{internal!r} reaches the student: {text}"


@pytest.fixture(autouse=True)
def slow_start_timeout(settings):
    """Failing fast must not come from the start timeout."""
    settings.LABS_START_TIMEOUT_SECONDS = 3600


def test_an_unknown_image_fails_the_start_with_the_pull_error(app_cluster, admin_core, make_lab, student):
    lab = make_lab()
    reference = f"registry.example.org/labs/missing-{uuid.uuid4().hex[:8]}:1"
    image = VMImage.objects.create(
        name=f"Missing {reference}", container_disk_image=reference, default_username="u"
    )
    lab.machines.update(image=image)
    app_cluster.faults.missing_image(reference)

    instance = lifecycle.instance_start(user=student, lab=lab)
    status = refresh_until_settled(instance)

    assert status.status == Status.FAILED
    instance.refresh_from_db()
    # Staff read the kubelet's words: which machine, which reason, which image.
    assert instance.last_error.startswith("Machine vm0: ")
    assert "ErrImagePull" in instance.last_error or "ImagePullBackOff" in instance.last_error
    assert reference in instance.last_error
    # The student reads what happened, without the cluster's internals.
    assert instance.last_error_plain == (
        "The machine vm0 cannot start: its disk image could not be downloaded. Tell your instructor."
    )
    (machine,) = status.machines
    assert machine.problem is not None and machine.problem.code == "image_unavailable"
    # Nothing is left running for a failed start.
    wait_for(lambda: not namespace_exists(admin_core, instance.namespace))


def test_memory_beyond_the_node_fails_the_start_as_unschedulable(app_cluster, make_lab, student):
    lab = make_lab()
    lab.machines.update(memory_mib=2048)
    app_cluster.faults.node(memory="1Gi")

    instance = lifecycle.instance_start(user=student, lab=lab)
    status = refresh_until_settled(instance)

    assert status.status == Status.FAILED
    instance.refresh_from_db()
    assert instance.last_error == (
        "Machine vm0: Unschedulable: 0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes "
        "are available: 1 No preemption victims found for incoming pod."
    )
    assert "has no room for it" in instance.last_error_plain
    assert_plain(instance.last_error_plain)


def test_a_quota_that_does_not_fit_waits_saying_why_then_times_out_with_the_reason(
    app_cluster, make_lab, student, settings
):
    """The app sized the quota for a cluster that gives each vCPU 1/1000 of a core, this one 1/10:
    the launcher pod is refused by the quota. Room may appear, so the start waits, and says why."""
    settings.KUBEVIRT_CPU_ALLOCATION_RATIO = "1000"
    instance = lifecycle.instance_start(user=student, lab=make_lab())

    def waiting() -> lifecycle.InstanceStatus | None:
        status = lifecycle.instance_refresh(instance=instance)
        return status if status.machines[0].problem is not None else None

    status = wait_for(waiting)
    assert status.status == Status.STARTING
    problem = status.machines[0].problem
    assert problem.code == "waiting_for_quota" and not problem.fatal
    assert "exceeded quota: lab-quota" in problem.detail("vm0")
    assert_plain(problem.plain("vm0"))

    report = lifecycle.reconcile(now=timezone.now() + timedelta(seconds=3601))
    assert instance.pk in report.failed
    instance.refresh_from_db()
    assert instance.status == Status.FAILED
    assert instance.last_error.startswith("The machines did not start within 3600 seconds. Machine vm0: ")
    assert "FailedCreate: failed to create virtual machine pod" in instance.last_error
    assert instance.last_error_plain == (
        "The machines did not start within 3600 seconds. The machine vm0 is waiting for room in this "
        "lab's resources; it starts as soon as there is."
    )


def test_the_lab_quota_fits_what_kubevirt_charges(app_cluster, admin_core, make_lab, student):
    """The defect of issue 15: the quota was smaller than the launcher pods, so labs hung Pending."""
    lab = make_lab(machines=3)
    lab.machines.filter(name="vm1").update(memory_mib=128, cores=2)
    instance = lifecycle.instance_start(user=student, lab=lab)
    wait_until_running(instance)
    quota = admin_core.read_namespaced_resource_quota("lab-quota", instance.namespace)
    for key, used in quota.status.used.items():
        assert used != "0", key


def test_a_create_the_cluster_refuses_fails_with_its_message_for_staff_only(app_cluster, make_lab, student):
    app_cluster.faults.fail("create", "virtualmachineinstances", status=422, times=None)

    with pytest.raises(lifecycle.ClusterError):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert instance.status == Status.FAILED
    assert instance.last_error.startswith("Starting failed: Could not create VirtualMachineInstance vm0 in ")
    assert (
        "localcluster injected fault: create virtualmachineinstances answers 422 (HTTP 422)"
        in instance.last_error
    )
    assert instance.last_error_plain == (
        "The lab could not start. The cluster cannot run this lab's machines as they are defined. "
        "Tell your instructor."
    )


def test_a_cluster_that_times_out_never_shows_the_student_its_address(
    app_cluster, make_lab, student, settings
):
    settings.KUBE_REQUEST_TIMEOUT = 0.5
    app_cluster.faults.hang("create", "virtualmachineinstances", seconds=3, times=None)

    with pytest.raises(lifecycle.ClusterUnavailable):
        lifecycle.instance_start(user=student, lab=make_lab())

    instance = LabInstance.objects.get(owner=student)
    assert "Read timed out" in instance.last_error  # staff see the client's words
    assert instance.last_error_plain == (
        "The lab could not start. The lab service cannot reach the cluster right now. Try again in a minute."
    )
