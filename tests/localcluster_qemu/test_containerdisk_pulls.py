"""containerDisks and kernelBoot containers pulled from a real registry by the qemu runtime.

The registry is Debian's docker-registry on loopback (localcluster/pytest_plugin.py); images are
built as KubeVirt's recipe lays them out (localcluster/registry/containerdisk.py) and pushed with
skopeo. The cluster has no local image store: everything comes through pulls. Failures are reported
as KubeVirt reports them (pkg/virt-controller/watch/vmi/lifecycle.go checkForContainerImageError:
Synchronized=False ErrImagePull, then ImagePullBackOff while the kubelet backs off).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from localcluster.harness import LocalCluster, start_local_cluster
from localcluster.registry.containerdisk import build_layout, disk_files, kernel_files
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import TOOLS, demo_images, demo_vmi, qemu_pids, wait_for

pytestmark = pytest.mark.qemu

VMI = ("kubevirt.io", "v1")
PULL_TIMEOUT = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    with start_local_cluster(
        tmp_path_factory.mktemp("pull-cluster"),
        runtime="qemu",
        extra_args=("--pull-timeout-seconds", str(PULL_TIMEOUT)),
    ) as c:
        yield c


@pytest.fixture(scope="module")
def api(cluster: LocalCluster) -> Any:
    return cluster.api_client("admin")


@pytest.fixture
def namespace(api: Any) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"pull-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def raw_disk_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A containerDisk whose disk boots nothing (SeaBIOS finds no boot sector): QEMU runs all the same."""
    folder = tmp_path_factory.mktemp("raw-disk")
    disk = folder / "disk.img"
    with disk.open("wb") as out:
        out.truncate(4 << 20)
    layout = folder / "layout"
    build_layout(layout, disk_files(disk))
    return layout


def create(api: Any, namespace: str, vmi: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        *VMI, namespace, "virtualmachineinstances", vmi
    )


def get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        *VMI, namespace, "virtualmachineinstances", name
    )


def condition(vmi: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (vmi.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def running(api: Any, namespace: str, name: str) -> bool:
    return (get(api, namespace, name).get("status") or {}).get("phase") == "Running"


def pull_failure(api: Any, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        synchronized = condition(get(api, namespace, name), "Synchronized")
        return synchronized if synchronized.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    return wait_for(failed, timeout, "the image pull to fail")


def test_a_kernel_boot_container_from_the_registry_boots_the_demo(api, namespace, oci_registry, tmp_path):
    image_dir = demo_images() / "localcluster-demo"
    meta = json.loads((image_dir / "image.json").read_text())
    layout = tmp_path / "kernel"
    build_layout(layout, kernel_files(image_dir / meta["kernel"], image_dir / meta["initrd"]))
    oci_registry.push_layout(layout, "tests/demo-kernel:1")
    vmi = demo_vmi("kernel")
    vmi["spec"]["volumes"] = []
    vmi["spec"]["domain"]["devices"]["disks"] = []
    vmi["spec"]["domain"]["firmware"] = {
        "kernelBoot": {
            "container": {
                "image": oci_registry.reference("tests/demo-kernel:1"),
                "kernelPath": "/boot/vmlinuz",
                "initrdPath": "/boot/initrd.img",
            },
            "kernelArgs": "console=ttyS0",
        }
    }
    create(api, namespace, vmi)

    wait_for(lambda: running(api, namespace, "kernel"), 120, "the kernel-boot VMI to run")
    assert qemu_pids(f"{namespace}/kernel")


def test_basic_auth_needs_the_pull_secret(api, namespace, start_oci_registry, raw_disk_layout):
    registry = start_oci_registry(users={"ann": "pull-pass"})
    registry.push_layout(raw_disk_layout, "tests/private:1")
    reference = registry.reference("tests/private:1")
    vmi = demo_vmi("anonymous", image=reference)
    create(api, namespace, vmi)
    failure = pull_failure(api, namespace, "anonymous")
    assert "authentication required" in failure["message"] or failure["reason"] == "ImagePullBackOff"
    assert not qemu_pids(f"{namespace}/anonymous")

    config = base64.b64encode(json.dumps(registry.credentials()).encode()).decode()
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": config},
        },
    )
    vmi = demo_vmi("with-secret", image=reference)
    vmi["spec"]["volumes"][0]["containerDisk"]["imagePullSecret"] = "pull"
    create(api, namespace, vmi)
    wait_for(lambda: running(api, namespace, "with-secret"), 60, "the VMI with the pull secret to run")


def test_a_missing_image_is_err_image_pull_then_back_off(api, namespace, oci_registry):
    reference = oci_registry.reference("tests/never-pushed:1")
    create(api, namespace, demo_vmi("missing", image=reference))
    failure = pull_failure(api, namespace, "missing")
    assert failure["reason"] == "ErrImagePull"
    assert failure["message"].startswith("rpc error: code = Unknown desc = ")
    assert "manifest unknown" in failure["message"]
    backoff = wait_for(
        lambda: condition(get(api, namespace, "missing"), "Synchronized").get("reason") == "ImagePullBackOff",
        10,
        "ImagePullBackOff",
    )
    assert backoff
    assert (get(api, namespace, "missing")["status"]).get("phase") == "Scheduling"


def test_an_image_without_disk_fails_as_virt_handler_does(api, namespace, oci_registry, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("no disk here")
    layout = tmp_path / "nodisk"
    build_layout(layout, {"data/notes.txt": notes})
    oci_registry.push_layout(layout, "tests/no-disk:1")
    create(api, namespace, demo_vmi("nodisk", image=oci_registry.reference("tests/no-disk:1")))

    def sync_failed() -> dict[str, Any] | None:
        synchronized = condition(get(api, namespace, "nodisk"), "Synchronized")
        return synchronized if synchronized.get("reason") == "Synchronizing with the Domain failed." else None

    failure = wait_for(sync_failed, 60, "the launch to fail")
    assert "Failed to check /disk for disks" in failure["message"]
    assert not qemu_pids(f"{namespace}/nodisk")


def test_a_registry_that_hangs_times_out_and_the_cluster_stays_responsive(api, namespace):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stay_silent() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    try:
        reference = f"127.0.0.1:{listener.getsockname()[1]}/tests/hang:1"
        create(api, namespace, demo_vmi("hang", image=reference))
        started = time.monotonic()
        # While the pull hangs, the API answers as usual.
        for _ in range(5):
            asked = time.monotonic()
            client.CoreV1Api(api).list_namespace()
            assert time.monotonic() - asked < 2
            time.sleep(0.3)
        failure = pull_failure(api, namespace, "hang", timeout=PULL_TIMEOUT + 30)
        assert "DeadlineExceeded" in failure["message"] or failure["reason"] == "ImagePullBackOff"
        assert time.monotonic() - started < PULL_TIMEOUT + 30
        assert held, "the runtime never reached the registry"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def test_pull_progress_is_on_the_vmi_while_it_pulls(api, namespace, oci_registry, tmp_path):
    """Every status write is a watch event: the Ready=False `Pulling` condition climbs to 100 % and
    is gone once the VMI runs (the app reads it: labs/machine_reasons.py pull_progress)."""
    disk = tmp_path / "noise.img"
    with disk.open("wb") as out:
        for _ in range(24):
            out.write(os.urandom(1 << 20))  # incompressible: the layer is as big as the disk
    build_layout(tmp_path / "layout", disk_files(disk))
    oci_registry.push_layout(tmp_path / "layout", "tests/progress:1")
    custom = client.CustomObjectsApi(api)
    stream = watch.Watch()
    events = stream.stream(
        custom.list_namespaced_custom_object, *VMI, namespace, "virtualmachineinstances", timeout_seconds=60
    )
    create(api, namespace, demo_vmi("progress", image=oci_registry.reference("tests/progress:1")))
    messages = []
    for event in events:
        status = event["object"].get("status") or {}
        ready = condition(event["object"], "Ready")
        if ready.get("reason") == "Pulling":
            messages.append(ready["message"])
        if status.get("phase") == "Running":
            assert ready.get("reason") != "Pulling"
            stream.stop()
    percents = [int(m.split()[1]) for m in messages]
    assert percents and percents[0] == 0 and percents[-1] == 100, messages
    assert percents == sorted(percents)
    assert all(oci_registry.reference("tests/progress:1") in m for m in messages)
