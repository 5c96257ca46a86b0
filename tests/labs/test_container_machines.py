"""Container machines through the app: an instance with a VM and a container on the local cluster
(the container a real runc container), their statuses, faults, pause, and the model's validation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError

from labs import cluster, lifecycle
from labs.exceptions import InvalidTransition
from labs.machine_reasons import IMAGE_UNAVAILABLE, RESTARTING, START_FAILED
from labs.models import Lab, LabInstance, LabMachine
from localcluster.containers import toolsimage
from localcluster.harness import LocalCluster, start_local_cluster
from tests.labs.conftest import wait_for, wait_until_running
from tests.localcluster_containers.container_helpers import TOOLS, missing

Status = LabInstance.Status
pytestmark = pytest.mark.django_db
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


@pytest.fixture(scope="module")
def container_app_cluster_server(tmp_path_factory) -> Iterator[LocalCluster]:
    if reason := missing():
        pytest.skip(reason)
    images = tmp_path_factory.mktemp("app-container-images")
    toolsimage.build(images, tag="1")
    with start_local_cluster(
        tmp_path_factory.mktemp("app-container-cluster"),
        extra_args=["--container-images", str(images), "--phase-delay-ms", "5", "--finalize-delay-ms", "10"],
    ) as server:
        yield server


@pytest.fixture
def container_cluster_app(container_app_cluster_server, settings):
    settings.KUBECONFIG = str(container_app_cluster_server.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    settings.KUBE_REQUEST_TIMEOUT = 15.0  # the shared test machine is often loaded
    cluster.reset_client()
    yield container_app_cluster_server
    cluster.reset_client()


def mixed_lab(image, *, vm: bool = True, **container) -> Lab:
    tag = uuid.uuid4().hex[:8]
    lab = Lab.objects.create(name=f"Lab {tag}", slug=f"lab-{tag}", namespace_prefix=f"c{tag}", published=True)
    if vm:
        LabMachine.objects.create(lab=lab, name="vm", image=image, cores=1, memory_mib=256, order=0)
    container.setdefault("container_image", TOOLS)
    container.setdefault("command", LOOP)
    LabMachine.objects.create(
        lab=lab, name="tools", kind="container", cores=1, memory_mib=64, order=1, **container
    )
    return lab


def failed_with(instance: LabInstance) -> lifecycle.InstanceStatus:
    def failed():
        status = lifecycle.instance_refresh(instance=instance)
        return status if status.status == Status.FAILED else None

    return wait_for(failed, timeout=20)


def test_a_vm_and_a_container_run_side_by_side(container_cluster_app, image, student):
    instance = lifecycle.instance_start(user=student, lab=mixed_lab(image))
    status = wait_until_running(instance, timeout=20)
    tools = next(m for m in status.machines if m.name == "tools")
    assert tools.kind == "container" and tools.ready and tools.ip_address.startswith("10.244.")
    copy = instance.machines.get(name="tools")
    assert (copy.kind, copy.image_reference, copy.command) == ("container", TOOLS, LOOP)
    lifecycle.instance_stop(instance=instance)


def test_pause_pauses_the_vms_and_the_container_keeps_running(container_cluster_app, image, student):
    instance = lifecycle.instance_start(user=student, lab=mixed_lab(image))
    wait_until_running(instance, timeout=20)
    lifecycle.instance_pause(instance=instance)

    def paused():
        status = lifecycle.instance_refresh(instance=instance)
        return status if status.status == Status.PAUSED and not instance.pending_action else None

    status = wait_for(paused, timeout=20)
    machines = {m.name: m for m in status.machines}
    assert machines["vm"].paused and not machines["tools"].paused
    assert machines["tools"].phase == "Running"
    lifecycle.instance_stop(instance=instance)


def test_a_lab_of_containers_only_cannot_be_paused(container_cluster_app, image, student):
    instance = lifecycle.instance_start(user=student, lab=mixed_lab(image, vm=False))
    wait_until_running(instance, timeout=20)
    with pytest.raises(InvalidTransition, match="only containers, which cannot be paused"):
        lifecycle.instance_pause(instance=instance)
    lifecycle.instance_stop(instance=instance)


def test_a_missing_image_fails_the_instance_with_the_kubelets_reason(container_cluster_app, image, student):
    instance = lifecycle.instance_start(
        user=student, lab=mixed_lab(image, container_image="registry.localcluster.test/ghost:1")
    )
    status = failed_with(instance)
    tools = next(m for m in status.machines if m.name == "tools")
    assert tools.problem.code == IMAGE_UNAVAILABLE
    assert "ErrImagePull" in status.last_error or "ImagePullBackOff" in status.last_error
    assert "could not be downloaded" in status.last_error_plain


def test_a_command_not_found_fails_the_instance(container_cluster_app, image, student):
    instance = lifecycle.instance_start(user=student, lab=mixed_lab(image, command=["no-such-command"]))
    status = failed_with(instance)
    tools = next(m for m in status.machines if m.name == "tools")
    assert tools.problem.code == START_FAILED
    assert "StartError" in status.last_error and "no-such-command" in status.last_error
    assert "could not be started" in status.last_error_plain


def test_a_command_that_exits_shows_restarting_with_its_exit_code(container_cluster_app, image, student):
    instance = lifecycle.instance_start(user=student, lab=mixed_lab(image, command=["sh", "-c", "exit 3"]))

    def restarting():
        status = lifecycle.instance_refresh(instance=instance)
        tools = next(m for m in status.machines if m.name == "tools")
        return tools if tools.problem is not None and tools.problem.code == RESTARTING else None

    tools = wait_for(restarting, timeout=20)
    assert "exit code 3 (Error)" in tools.problem.cluster_message
    assert not tools.problem.fatal
    lifecycle.instance_stop(instance=instance)


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"container_image": ""}, "container_image"),
        ({"container_image": "Not A Reference!"}, "container_image"),
        ({"command": "sleep 1"}, "command"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"ports": [0]}, "ports"),
        ({"shell_user": "Root Admin"}, "shell_user"),
        ({"cloud_init_user_data": "#cloud-config\n{}"}, "cloud_init_user_data"),
    ],
)
def test_container_machines_are_validated(db, image, fields, error_field):
    lab = Lab.objects.create(name="L", slug=f"l-{uuid.uuid4().hex[:6]}", namespace_prefix="lv")
    values = {"container_image": TOOLS, **fields}
    machine = LabMachine(lab=lab, name="tools", kind="container", cores=1, memory_mib=64, **values)
    with pytest.raises(ValidationError) as err:
        machine.full_clean()
    assert error_field in err.value.message_dict


def test_a_vm_needs_an_image_and_takes_no_container_fields(db, image):
    lab = Lab.objects.create(name="L", slug=f"l-{uuid.uuid4().hex[:6]}", namespace_prefix="lv")
    with pytest.raises(ValidationError) as err:
        LabMachine(lab=lab, name="vm", cores=1, memory_mib=64).full_clean()
    assert "image" in err.value.message_dict
    with pytest.raises(ValidationError) as err:
        LabMachine(lab=lab, name="vm", image=image, cores=1, memory_mib=256, ports=[80]).full_clean()
    assert "ports" in err.value.message_dict


def test_the_watcher_records_a_container_machines_status(container_cluster_app, image, student):
    from labs.watcher import ClusterWatcher

    watcher = ClusterWatcher()
    watcher.start()
    try:
        instance = lifecycle.instance_start(
            user=student, lab=mixed_lab(image, command=["sh", "-c", "exit 3"])
        )

        def restarting():
            watcher.apply_pending()
            row = instance.machines.get(name="tools")
            return row if row.problem_code == RESTARTING else None

        row = wait_for(restarting, timeout=30)
        assert "exit code 3 (Error)" in row.problem_message
        lifecycle.instance_stop(instance=instance)
    finally:
        watcher.stop()
