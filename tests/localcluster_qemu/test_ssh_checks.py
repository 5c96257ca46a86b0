"""Step checks on real VMs: the demo image's dropbear, given the host key and the check user's key by
cloud-init, reached through the qemu runtime's portforward (a network namespace on the lab segment,
localcluster/qemu/portforward.py), as the app does it (labs/machine_exec.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from labs import cluster, lifecycle, machine_exec
from labs.machine_exec import ExecFailed, MachineAccess, Problem
from labs.models import Lab, LabInstance, LabMachine, VMImage
from localcluster.demoimage import DEMO_REFERENCE
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import TOOLS, demo_images

pytestmark = pytest.mark.django_db(transaction=True)
BOOT_SECONDS = 180


@pytest.fixture(scope="module")
def qemu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    for executable, package in {**TOOLS, "dropbear": "dropbear-bin"}.items():
        require_tool(executable, package)
    with start_local_cluster(tmp_path_factory.mktemp("qemu-ssh"), runtime="qemu", images=demo_images()) as c:
        yield c


@pytest.fixture
def running(qemu_cluster, settings, student) -> Iterator[LabInstance]:
    settings.KUBECONFIG = str(qemu_cluster.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    cluster.reset_client()
    tag = uuid.uuid4().hex[:6]
    image = VMImage.objects.create(
        name=f"Demo {tag}",
        container_disk_image=DEMO_REFERENCE,
        default_username="lab",
        has_ssh_server=True,
        min_memory_mib=96,
    )
    lab = Lab.objects.create(name=f"SSH {tag}", slug=f"ssh-{tag}", namespace_prefix=f"s{tag}", published=True)
    LabMachine.objects.create(lab=lab, name="alpha", image=image, memory_mib=128)
    instance = lifecycle.instance_start(user=student, lab=lab)
    deadline = time.monotonic() + BOOT_SECONDS
    while lifecycle.instance_refresh(instance=instance).status != LabInstance.Status.RUNNING:
        assert instance.status != LabInstance.Status.FAILED, instance.last_error
        assert time.monotonic() < deadline
        time.sleep(0.5)
    yield instance
    lifecycle.instance_stop(instance=instance)
    cluster.reset_client()


def access_to(instance: LabInstance) -> MachineAccess:
    machine = instance.machines.get(name="alpha")
    return MachineAccess(
        namespace=instance.namespace,
        machine="alpha",
        private_key=instance.check_key.private_key,
        host_public_key=machine.ssh_host_public_key,
    )


def run_when_up(access: MachineAccess, script: str, timeout: float = 20) -> machine_exec.ScriptResult:
    """The guest boots after QEMU's monitor answers: retry while it does not answer on the network
    yet (still starting) or its SSH server refuses."""
    deadline = time.monotonic() + BOOT_SECONDS
    while True:
        try:
            return asyncio.run(machine_exec.run_script(access, script, timeout=timeout))
        except ExecFailed as failure:
            booting = failure.problem in (Problem.UNREACHABLE, Problem.NOT_RUNNING)
            if not booting or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_a_check_runs_on_the_real_vm_over_portforward_and_ssh(running):
    access = access_to(running)
    result = run_when_up(
        access, 'echo "on $(hostname) as $USER, uid $(id -u)"; ip -o -4 addr show eth0; exit 4'
    )
    assert result.exit_status == 4
    # The demo image has no sudo: its check user is uid 0 (demoimage.py).
    assert result.stdout.startswith("on alpha as labcheck, uid 0\n")
    assert " eth0 " in result.stdout
    # What a student does in the VM is what the check sees.
    run_when_up(access, "echo student-work > /tmp/work")
    assert run_when_up(access, "cat /tmp/work").stdout == "student-work\n"


def test_a_port_nothing_listens_on_is_refused_by_the_guest(running, qemu_cluster):
    run_when_up(access_to(running), "true")  # the guest is up
    address = next(m.ip_address for m in lifecycle.instance_refresh(instance=running).machines)
    base = qemu_cluster.url.replace("https://", "wss://")
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{running.namespace}/virtualmachineinstances/alpha"

    async def dial() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(
                f"{base}{path}/portforward/2222/tcp",
                ssl=qemu_cluster.ssl_context(),
                additional_headers={"Authorization": f"Bearer {qemu_cluster.token('admin')}"},
                proxy=None,
            ):
                pass
        return refused.value

    response = asyncio.run(dial()).response
    assert response.status_code == 500
    assert json.loads(response.body)["message"] == (
        f"Internal error occurred: dialing VM: dial tcp {address}:2222: connect: connection refused"
    )
