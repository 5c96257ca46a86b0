"""A stock cloud image in a lab: the Debian cloud-style image (localcluster/cloudimage.py) next to the
busybox demo, both as the app builds them (labs/manifests.py), created through the real API.

The Debian guest knows nothing of Lab Orchestrator: it takes its address by DHCP, cloud-init's
NoCloud data source reads the Secret's user data (the generated password, the lab's extra user
data), and it finds the other machine by name. Checked the way a student would: a login on the
serial console.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labs import launcher_sizing, manifests
from localcluster import cloudimage
from localcluster.demoimage import DEMO_REFERENCE, BuildError
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import TOOLS, Stream, debian_images, wait_for

pytestmark = [pytest.mark.qemu, pytest.mark.cloudimage]

VMI = ("kubevirt.io", "v1")
# Boot to the login prompt takes 1-2 minutes of TCG on an idle machine (bench/vm_boot.py); the
# machine may be shared.
BOOT_TIMEOUT = 900
MARKER = "written by the lab's extra cloud-init user data"


def debian_image_store() -> Path:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    try:
        return debian_images()
    except BuildError as error:
        message = f"cannot build the Debian cloud-style image: {error}"
        if os.getenv("LABORCHESTRATOR_REQUIRE_ALL_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    images = debian_image_store()
    with start_local_cluster(tmp_path_factory.mktemp("cloud-image"), runtime="qemu", images=images) as c:
        yield c


@pytest.fixture(scope="module")
def lab(cluster: LocalCluster) -> dict[str, Any]:
    """`server` (Debian) and `client` (busybox demo) of one instance, objects as the app makes them."""
    namespace = f"cloud-{secrets.token_hex(3)}"
    server = manifests.MachineSpec(
        name="server",
        image_reference=cloudimage.REFERENCE,
        cores=1,
        memory_mib=512,
        username=cloudimage.DEFAULT_USER,
        password=secrets.token_urlsafe(12),
        has_vnc=False,
        has_serial_console=True,
        extra_user_data=f"#cloud-config\nwrite_files:\n  - path: /run/lab-marker\n    content: {MARKER}\n",
    )
    client_machine = manifests.MachineSpec(
        name="client",
        image_reference=DEMO_REFERENCE,
        cores=1,
        memory_mib=128,
        username="lab",
        password=secrets.token_urlsafe(12),
        has_vnc=False,
        has_serial_console=True,
    )
    objects = manifests.make_instance_manifests(
        namespace=namespace,
        instance_id=1,
        lab_slug="cloud",
        owner_id=1,
        installation_id="cloud-image-test",
        machines=[server, client_machine],
        sizing=launcher_sizing.KubeVirtSizing(),
        profile=manifests.ClusterProfile(),
    )
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace(objects.namespace)
    client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, objects.network_policy)
    core.create_namespaced_resource_quota(namespace, objects.resource_quota)
    core.create_namespaced_service(namespace, objects.service)
    for secret in objects.secrets:
        core.create_namespaced_secret(namespace, secret)
    for vmi in objects.vmis:
        custom.create_namespaced_custom_object(*VMI, namespace, "virtualmachineinstances", vmi)

    def addresses() -> dict[str, str] | None:
        found = {}
        for name in ("server", "client"):
            vmi = custom.get_namespaced_custom_object(*VMI, namespace, "virtualmachineinstances", name)
            status = vmi.get("status") or {}
            assert status.get("phase") != "Failed", f"{name} failed: {status}"
            if status.get("phase") != "Running":
                return None
            found[name] = status["interfaces"][0]["ipAddress"]
        return found

    return {"ns": namespace, "ip": wait_for(addresses, 120, "both VMIs to run"), "password": server.password}


async def login(cluster: LocalCluster, lab: dict[str, Any]) -> Stream:
    """Wait for cloud-init to finish on the serial console, then log in with the generated password."""
    stream = await Stream.open(
        cluster.url, cluster.token("admin"), cluster.ssl_context(), lab["ns"], "server", "console"
    )
    # cloud-init sets the password in its config stage, which may end after getty's first prompt;
    # its final stage prints this line once everything is done.
    await stream.read_until(b" finished at ", BOOT_TIMEOUT)
    await stream.send(b"\n")
    await stream.read_until(b"server login: ", 60)
    await stream.send(f"{cloudimage.DEFAULT_USER}\n".encode())
    await stream.read_until(b"Password: ", 60)
    await stream.send(f"{lab['password']}\n".encode())
    await stream.read_until(f"{cloudimage.DEFAULT_USER}@server:~$ ".encode(), 120)
    return stream


async def test_a_stock_cloud_image_gets_its_address_login_user_data_and_names(
    cluster: LocalCluster, lab: dict[str, Any]
) -> None:
    stream = await login(cluster, lab)
    try:
        addresses = await stream.run("ip -4 addr show scope global; hostname", "ADDR")
        user_data = await stream.run("cat /run/lab-marker", "UD")
        ping = await stream.run("ping -c 2 -W 5 client", "PING", timeout=60)
    finally:
        await stream.close()
    # DHCP gave the guest the pod IP the API reports (bridge binding), and its host name.
    assert f"inet {lab['ip']['server']}/24" in addresses, addresses
    assert re.search(r"^server\r?$", addresses, re.MULTILINE), addresses
    # The extra user data reached cloud-init along with the password that just logged us in.
    assert MARKER in user_data, user_data
    # `client` through the search path DHCP gave and the cluster DNS of the headless Service.
    assert f"client.lab.{lab['ns']}.svc.cluster.local ({lab['ip']['client']})" in ping, ping
    assert "PING-0-0" in ping, ping
