"""Running a script on a lab machine: KubeVirt's portforward to the guest's SSH server, as the check
user, trusting only the host key the app generated (labs/machine_exec.py), against the local
cluster's `none` runtime, whose guests run an SSH server in a sandbox (localcluster/runtimes/fakessh.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from kubernetes import client

from labs import lifecycle, machine_exec
from labs.machine_exec import ExecFailed, MachineAccess, Problem
from labs.models import LabInstance
from tests.conftest import require_tool
from tests.labs.conftest import wait_for, wait_until_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ssh_lab(make_lab, image):
    require_tool("busybox", "busybox-static")
    image.has_ssh_server = True
    image.save()
    return make_lab(machines=2)


@pytest.fixture
def running(app_cluster, ssh_lab, student) -> LabInstance:
    instance = lifecycle.instance_start(user=student, lab=ssh_lab)
    wait_until_running(instance)
    yield instance
    lifecycle.instance_stop(instance=instance)


def access_to(instance: LabInstance, machine: str = "vm0") -> MachineAccess:
    row = instance.machines.get(name=machine)
    return MachineAccess(
        namespace=instance.namespace,
        machine=machine,
        private_key=instance.check_key.private_key,
        host_public_key=row.ssh_host_public_key,
    )


def run(access: MachineAccess, script: str, timeout: float = 15, **kwargs) -> machine_exec.ScriptResult:
    return asyncio.run(machine_exec.run_script(access, script, timeout=timeout, **kwargs))


def test_a_script_runs_as_the_check_user_and_reports_its_exit_status_and_output(running):
    result = run(access_to(running), 'echo "hello from $(cat /etc/hostname)"; echo oops >&2; exit 3')
    assert result.exit_status == 3
    assert result.stdout == "hello from vm0\n"
    assert result.stderr == "oops\n"
    assert not result.truncated


def test_what_one_script_leaves_the_next_sees_on_the_same_machine_only(running):
    run(access_to(running, "vm0"), "echo done > /tmp/marker")
    assert run(access_to(running, "vm0"), "cat /tmp/marker").stdout == "done\n"
    assert run(access_to(running, "vm1"), "cat /tmp/marker").exit_status != 0


def test_output_is_capped_to_its_end(running):
    result = run(access_to(running), "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done")
    assert result.truncated
    assert len(result.stdout.encode()) == machine_exec.STDOUT_LIMIT
    assert result.stdout.endswith("line 19999\n")


def test_a_script_that_never_ends_times_out_and_the_next_one_works(running):
    with pytest.raises(ExecFailed) as failed:
        run(access_to(running), "sleep 60", timeout=1)
    assert failed.value.problem == Problem.TIMED_OUT
    assert "within 1 seconds" in failed.value.plain
    assert run(access_to(running), "echo again").stdout == "again\n"


def test_a_wrong_host_key_is_refused(running, ssh_lab):
    other = dataclasses.replace(
        access_to(running), host_public_key=running.machines.get(name="vm1").ssh_host_public_key
    )
    with pytest.raises(ExecFailed) as failed:
        run(other, "true")
    assert failed.value.problem == Problem.LOGIN
    assert "Tell your instructor" in failed.value.plain


def test_another_instance_key_is_refused(running, ssh_lab, other_student):
    second = lifecycle.instance_start(user=other_student, lab=ssh_lab)
    try:
        wait_until_running(second)
        foreign = dataclasses.replace(access_to(running), private_key=second.check_key.private_key)
        with pytest.raises(ExecFailed) as failed:
            run(foreign, "true")
        assert failed.value.problem == Problem.LOGIN
    finally:
        lifecycle.instance_stop(instance=second)


def test_a_paused_machine_is_not_running_not_a_failed_check(running, admin_vmis):
    lifecycle.instance_pause(instance=running)
    # virt-api refuses once the Paused condition is there, which virt-handler sets after the pause.
    wait_for(
        lambda: all(
            any(c.get("type") == "Paused" and c.get("status") == "True" for c in v["status"]["conditions"])
            for v in admin_vmis(running.namespace)
        )
    )
    with pytest.raises(ExecFailed) as failed:
        run(access_to(running), "true")
    assert failed.value.problem == Problem.NOT_RUNNING
    assert "paused" in failed.value.plain


def test_a_machine_that_is_gone_is_not_running(running, local_cluster, admin_vmis):
    """virt-api's 404 for a VMI that no longer exists. (Once the whole namespace is gone, its
    RoleBinding is too and the answer is a 403: tutorials/checking.py checks the instance first.)"""
    access = access_to(running)
    api = client.CustomObjectsApi(local_cluster.api_client("admin"))
    api.delete_namespaced_custom_object(
        "kubevirt.io", "v1", running.namespace, "virtualmachineinstances", "vm0"
    )
    wait_for(lambda: all(v["metadata"]["name"] != "vm0" for v in admin_vmis(running.namespace)))
    with pytest.raises(ExecFailed) as failed:
        run(access, "true")
    assert failed.value.problem == Problem.NOT_RUNNING
    assert failed.value.plain == "The machine vm0 is not running."


def test_a_dropped_connection_is_reported_and_the_next_run_works(running, app_cluster):
    app_cluster.faults.drop_websocket("portforward", after_bytes=2000)
    with pytest.raises(ExecFailed) as failed:
        run(access_to(running), "sleep 1; echo late")
    assert failed.value.problem in (Problem.DROPPED, Problem.UNREACHABLE)
    assert run(access_to(running), "echo fine").stdout == "fine\n"


def test_cancelling_ends_a_running_script(running):
    access = access_to(running)

    async def go() -> None:
        started = asyncio.get_running_loop().time()

        async def cancelled() -> bool:
            return asyncio.get_running_loop().time() - started > 1

        await machine_exec.run_script(access, "sleep 30", timeout=60, cancelled=cancelled)

    with pytest.raises(ExecFailed) as failed:
        asyncio.run(go())
    assert failed.value.problem == Problem.CANCELLED
