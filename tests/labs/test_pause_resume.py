"""Pausing freezes every machine of an instance; resuming thaws them. Both are idempotent."""

import pytest

from labs import lifecycle
from labs.exceptions import InvalidTransition
from labs.models import LabInstance
from tests.labs.conftest import wait_until_running, wait_until_stopped

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


def test_pause_and_resume_every_machine(running, admin_vmis):
    lifecycle.instance_pause(instance=running)

    assert running.status == Status.PAUSED
    assert paused_flags(admin_vmis, running.namespace) == [True, True]
    status = lifecycle.instance_refresh(instance=running)
    assert status.status == Status.PAUSED
    assert all(m.paused for m in status.machines)

    lifecycle.instance_resume(instance=running)

    assert running.status == Status.RUNNING
    assert paused_flags(admin_vmis, running.namespace) == [False, False]
    assert LabInstance.objects.get(pk=running.pk).status == Status.RUNNING


def test_pause_and_resume_twice_are_harmless(running):
    lifecycle.instance_pause(instance=running)
    lifecycle.instance_pause(instance=running)
    assert running.status == Status.PAUSED
    lifecycle.instance_resume(instance=running)
    lifecycle.instance_resume(instance=running)
    assert running.status == Status.RUNNING


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

    lifecycle.instance_pause(instance=running)

    assert running.status == Status.PAUSED
    assert paused_flags(admin_vmis, running.namespace) == [True, True]


def test_pausing_outside_the_app_shows_up_in_the_status(running, local_cluster):
    for name in ("vm0", "vm1"):
        _subresource(local_cluster, running.namespace, name, "pause")

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
