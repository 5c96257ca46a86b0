"""Pausing freezes every machine of an instance; resuming thaws them. Both are idempotent."""

import time

import pytest

from labs import lifecycle
from labs.exceptions import InvalidTransition
from labs.models import LabInstance
from tests.labs.conftest import wait_for, wait_until_running, wait_until_stopped

pytestmark = pytest.mark.django_db
Status = LabInstance.Status


def paused_flags(admin_vmis, namespace):
    return sorted(
        any(c["type"] == "Paused" and c["status"] == "True" for c in vmi["status"].get("conditions") or [])
        for vmi in admin_vmis(namespace)
    )


@pytest.fixture
def running(app_cluster, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    wait_until_running(instance)
    return instance


def wait_until_confirmed(instance: LabInstance) -> lifecycle.InstanceStatus:
    """Refresh until the cluster confirmed the pause or resume asked for."""

    def confirmed() -> lifecycle.InstanceStatus | None:
        status = lifecycle.instance_refresh(instance=instance)
        return status if not instance.pending_action else None

    return wait_for(confirmed, timeout=20)


def test_pause_and_resume_every_machine(running, admin_vmis):
    lifecycle.instance_pause(instance=running)

    assert running.status == Status.PAUSED
    status = wait_until_confirmed(running)
    assert status.status == Status.PAUSED
    assert all(m.paused and not m.ready for m in status.machines)
    assert paused_flags(admin_vmis, running.namespace) == [True, True]

    lifecycle.instance_resume(instance=running)

    assert running.status == Status.RUNNING
    status = wait_until_confirmed(running)
    assert status.status == Status.RUNNING
    assert not any(m.paused for m in status.machines)
    assert paused_flags(admin_vmis, running.namespace) == [False, False]
    assert LabInstance.objects.get(pk=running.pk).status == Status.RUNNING


def test_pause_and_resume_twice_are_harmless(running):
    lifecycle.instance_pause(instance=running)
    lifecycle.instance_pause(instance=running)
    assert running.status == Status.PAUSED
    wait_until_confirmed(running)
    lifecycle.instance_resume(instance=running)
    lifecycle.instance_resume(instance=running)
    assert running.status == Status.RUNNING


def test_the_status_stays_paused_until_the_cluster_confirms_the_pause(running, app_cluster):
    # virt-handler writes the Paused condition a while after the pause was answered.
    app_cluster.faults.slow_pause_condition(ms=1500)

    lifecycle.instance_pause(instance=running)

    seen = set()
    while True:
        status = lifecycle.instance_refresh(instance=running)
        seen.add(status.status)
        if all(m.paused for m in status.machines):
            break
        assert running.pending_action == LabInstance.PendingAction.PAUSE
        time.sleep(0.05)
    assert seen == {Status.PAUSED}  # never back to running while the cluster caught up
    assert running.pending_action == ""
    assert LabInstance.objects.get(pk=running.pk).pending_action == ""


def test_the_status_stays_running_until_the_cluster_confirms_the_resume(running, app_cluster):
    lifecycle.instance_pause(instance=running)
    wait_until_confirmed(running)
    app_cluster.faults.slow_pause_condition(ms=1500)

    lifecycle.instance_resume(instance=running)

    seen = set()
    while True:
        status = lifecycle.instance_refresh(instance=running)
        seen.add(status.status)
        if not any(m.paused for m in status.machines):
            break
        time.sleep(0.05)
    assert seen == {Status.RUNNING}
    assert running.pending_action == ""


def test_a_resume_while_the_pause_is_not_confirmed_is_refused_with_a_reason(running, app_cluster):
    """In that window KubeVirt answers an unpause with 409 "VMI is not paused" although the machine
    is paused: resuming then would leave it paused while the page says running."""
    app_cluster.faults.slow_pause_condition(ms=8000)  # longer than a resume waits for it
    lifecycle.instance_pause(instance=running)

    with pytest.raises(InvalidTransition, match="still pausing"):
        lifecycle.instance_resume(instance=running)

    wait_until_confirmed(running)
    app_cluster.faults.clear()
    lifecycle.instance_resume(instance=running)  # confirmed: now it works
    assert wait_until_confirmed(running).status == Status.RUNNING


def test_a_resume_right_after_the_pause_waits_for_its_confirmation(running, app_cluster, monkeypatch):
    monkeypatch.setattr(lifecycle, "OPPOSITE_ACTION_WAIT_SECONDS", 20.0)  # however loaded the machine
    app_cluster.faults.slow_pause_condition(ms=500)
    lifecycle.instance_pause(instance=running)

    lifecycle.instance_resume(instance=running)

    assert running.status == Status.RUNNING
    status = wait_until_confirmed(running)
    assert status.status == Status.RUNNING
    assert not any(m.paused for m in status.machines)


def test_a_pause_the_cluster_does_not_confirm_in_time_is_reported(running, app_cluster, settings):
    settings.LABS_PAUSE_TIMEOUT_SECONDS = 0.3
    app_cluster.faults.slow_pause_condition(ms=30_000)
    lifecycle.instance_pause(instance=running)
    time.sleep(0.4)

    status = lifecycle.instance_refresh(instance=running)

    assert status.status == Status.RUNNING  # what the cluster says: nothing was confirmed paused
    assert status.last_error == "The machines did not pause within 0.3 seconds."
    assert LabInstance.objects.get(pk=running.pk).pending_action == ""
    # A later pause is allowed, and a confirmed one clears the message.
    app_cluster.faults.clear()
    lifecycle.instance_pause(instance=running)
    assert running.last_error == ""


def _subresource(local_cluster, namespace, name, action):
    """Pause or unpause one VMI as an administrator would, behind the application's back."""
    api = local_cluster.api_client("admin")
    method, url, headers, body, _ = api.param_serialize(
        method="PUT",
        resource_path=f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}"
        f"/virtualmachineinstances/{name}/{action}",
        header_params={"Content-Type": "application/json"},
        body={},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    assert response.status == 200


def test_machines_already_paused_in_the_cluster_count_as_paused(running, local_cluster, admin_vmis):
    # One machine was paused behind our back: its 409 "already paused" is success, not an error.
    _subresource(local_cluster, running.namespace, "vm0", "pause")
    wait_for(lambda: paused_flags(admin_vmis, running.namespace) == [False, True])

    lifecycle.instance_pause(instance=running)

    assert running.status == Status.PAUSED
    wait_until_confirmed(running)
    assert paused_flags(admin_vmis, running.namespace) == [True, True]


def test_pausing_outside_the_app_shows_up_in_the_status(running, local_cluster, admin_vmis):
    for name in ("vm0", "vm1"):
        _subresource(local_cluster, running.namespace, name, "pause")
    wait_for(lambda: paused_flags(admin_vmis, running.namespace) == [True, True])

    assert lifecycle.instance_refresh(instance=running).status == Status.PAUSED


def test_only_running_instances_can_be_paused(running):
    lifecycle.instance_stop(instance=running)
    wait_until_stopped(running)

    with pytest.raises(InvalidTransition, match="stopped"):
        lifecycle.instance_pause(instance=running)
    with pytest.raises(InvalidTransition):
        lifecycle.instance_resume(instance=running)


def test_a_stopped_instance_never_becomes_running_again():
    assert lifecycle.ALLOWED_TRANSITIONS[Status.STOPPED] == frozenset()
    assert lifecycle.ALLOWED_TRANSITIONS[Status.EXPIRED] == frozenset()
    assert Status.RUNNING not in lifecycle.ALLOWED_TRANSITIONS[Status.STOPPING]
