"""A VM (qemu runtime) and a container (runc) of one namespace share its lab network: they ping each
other by address and by cluster DNS name; another namespace's container reaches neither."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from localcluster.demoimage import BANNER
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_containers.container_helpers import exec_frames, pod, running, wait_for
from tests.localcluster_qemu.qemu_helpers import TOOLS, Stream, demo_images, demo_vmi
from tests.localcluster_qemu.qemu_helpers import wait_for as wait_until

pytestmark = pytest.mark.qemu
VMI = ("kubevirt.io", "v1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tools_images) -> Iterator[LocalCluster]:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    with start_local_cluster(
        tmp_path_factory.mktemp("vm-and-container"),
        runtime="qemu",
        images=demo_images(),
        extra_args=["--container-images", str(tools_images)],
    ) as c:
        yield c


@pytest.fixture(scope="module")
def lab(cluster: LocalCluster) -> dict[str, Any]:
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    suffix = secrets.token_hex(3)
    ns, other = f"mixed-{suffix}", f"other-{suffix}"
    for name in (ns, other):
        core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "lab"},
            "spec": {"clusterIP": "None", "selector": {"lab": "x"}, "publishNotReadyAddresses": True},
        },
    )
    custom.create_namespaced_custom_object(
        *VMI, ns, "virtualmachineinstances", demo_vmi("vm", labels={"lab": "x"}, subdomain="lab")
    )
    tools = pod("tools", ["sleep", "100000"], subdomain="lab")
    tools["metadata"]["labels"] = {"lab": "x"}
    core.create_namespaced_pod(ns, tools)
    core.create_namespaced_pod(other, pod("stranger", ["sleep", "100000"]))

    def vm_running() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "vm")
        return obj if (obj.get("status") or {}).get("phase") == "Running" else None

    vm = wait_until(vm_running, 60, "the VM")
    return {
        "ns": ns,
        "other": other,
        "core": core,
        "vm_ip": vm["status"]["interfaces"][0]["ipAddress"],
        "pod_ip": wait_for(core, ns, "tools", running).status.pod_ip,
        "stranger_ip": wait_for(core, other, "stranger", running).status.pod_ip,
    }


def test_the_container_pings_the_vm_by_address_and_name(cluster, lab):
    # The guest answers once booted (minutes under TCG on a shared machine): ping until it does.
    wait = (
        f"i=0; until ping -c 1 -W 1 {lab['vm_ip']} >/dev/null; do i=$((i+1)); [ $i -gt 200 ] && exit 2; done"
    )
    out, status, _ = exec_frames(
        cluster, lab["ns"], "tools", ["sh", "-c", f"{wait}; ping -c 1 -W 5 vm.lab"], timeout=240
    )
    assert status == {"metadata": {}, "status": "Success"}, out
    assert f"PING vm.lab ({lab['vm_ip']})" in out[1].decode()


def test_the_vm_pings_the_container_by_address_and_name(cluster, lab):
    async def run() -> str:
        stream = await Stream.open(
            cluster.url, cluster.token("admin"), cluster.ssl_context(), lab["ns"], "vm", "console"
        )
        try:
            await stream.read_until(BANNER.encode(), 150)
            await stream.read_until(b"root@vm:/# ", 30)
            return await stream.run(
                f"ping -c 1 -W 3 {lab['pod_ip']} && ping -c 1 -W 3 tools.lab", "PING", timeout=40
            )
        finally:
            await stream.close()

    out = asyncio.run(run())
    assert "PING-0-0" in out, out
    assert f"PING tools.lab ({lab['pod_ip']})" in out, out


def test_another_namespaces_container_reaches_neither(cluster, lab):
    out, status, _ = exec_frames(
        cluster,
        lab["other"],
        "stranger",
        ["sh", "-c", f"ping -c 1 -W 2 {lab['vm_ip']} || ping -c 1 -W 2 {lab['pod_ip']} || exit 9"],
        timeout=30,
    )
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "9"}], out
