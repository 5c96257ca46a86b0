"""The `portforward` subresource as virt-api serves it: pkg/virt-api/rest/portforward.go (409 on a
paused VMI), dialers.go (netDial: the first interface's address; 400 "no network interfaces are
present"; a failed dial is a 500 InternalError "dialing VM: ..."), streamer.go (the dial happens
before the upgrade; then binary frames both ways), authorizer.go (RBAC on
`virtualmachineinstances/portforward`, without port or protocol). The `none` runtime's guests answer
on port 22 with an SSH server (localcluster/runtimes/fakessh.py) and refuse every other port."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from kubernetes import client
from websockets.exceptions import InvalidStatus

from tests.localcluster.lc_helpers import small_vmi, vmi_subresource, wait_for

PROTOCOL = "plain.kubevirt.io"
LAB_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "lab"},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "laborchestrator-lab",
    },
    "subjects": [{"kind": "ServiceAccount", "name": "laborchestrator", "namespace": "laborchestrator"}],
}


def connect(cluster, ns: str, name: str, tail: str = "22/tcp", identity: str = "admin"):
    base = cluster.url.replace("https://", "wss://")
    return websockets.connect(
        f"{base}/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/portforward/{tail}",
        ssl=cluster.ssl_context(),
        subprotocols=[PROTOCOL],
        additional_headers={"Authorization": f"Bearer {cluster.token(identity)}"},
        open_timeout=5,
        proxy=None,
    )


@pytest.fixture
def running_vmi(vmis, ns) -> tuple[str, str, str]:
    vmis.create(ns, small_vmi("guest"))
    vmi = vmis.running(ns, "guest")
    return ns, "guest", vmi["status"]["interfaces"][0]["ipAddress"]


async def refusal(cluster, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(cluster, *args, **kwargs):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body)


async def test_port_22_carries_the_guests_ssh_server_in_binary_frames(local_cluster, running_vmi):
    ns, name, _ = running_vmi
    async with connect(local_cluster, ns, name) as ws:
        assert ws.subprotocol == PROTOCOL
        async with asyncio.timeout(5):
            banner = await ws.recv()
        assert isinstance(banner, bytes) and banner.startswith(b"SSH-2.0-")


async def test_the_protocol_may_be_left_out(local_cluster, running_vmi):
    ns, name, _ = running_vmi
    async with connect(local_cluster, ns, name, tail="22") as ws, asyncio.timeout(5):
        assert (await ws.recv()).startswith(b"SSH-2.0-")


async def test_a_refused_port_is_an_internal_error_before_the_upgrade(local_cluster, running_vmi):
    ns, name, address = running_vmi
    status, body = await refusal(local_cluster, ns, name, tail="8080/tcp")
    assert status == 500
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        f"Internal error occurred: dialing VM: dial tcp {address}:8080: connect: connection refused"
    )


async def test_a_paused_vmi_is_a_conflict(local_cluster, running_vmi, admin_api, vmis):
    ns, name, _ = running_vmi
    vmi_subresource(admin_api, ns, name, "pause")
    # virt-api decides on the Paused condition, which virt-handler sets after the pause returned.
    wait_for(
        lambda: any(
            c.get("type") == "Paused" and c.get("status") == "True"
            for c in vmis.get(ns, name).get("status", {}).get("conditions", [])
        )
    )
    status, body = await refusal(local_cluster, ns, name)
    assert status == 409
    assert body["message"].endswith("VMI is paused")


async def test_a_vmi_without_an_address_yet_is_a_bad_request(local_cluster, vmis, ns):
    local_cluster.faults.missing_image("quay.io/containerdisks/cirros:0.6")
    vmis.create(ns, small_vmi("waiting"))
    wait_for(lambda: vmis.get(ns, "waiting").get("status", {}).get("phase") == "Scheduling")
    status, body = await refusal(local_cluster, ns, "waiting")
    assert (status, body["message"]) == (400, "no network interfaces are present")


async def test_a_missing_vmi_is_not_found(local_cluster, ns):
    status, body = await refusal(local_cluster, ns, "nobody-here")
    assert (status, body["reason"]) == (404, "NotFound")


async def test_rbac_names_the_subresource_without_port_or_protocol(local_cluster, running_vmi, admin_api):
    ns, name, _ = running_vmi
    status, body = await refusal(local_cluster, ns, name, identity="laborchestrator")
    assert status == 403
    assert 'cannot get resource "virtualmachineinstances/portforward"' in body["message"]
    # deploy/k8s/rbac.yaml's lab role, bound in the namespace as the app binds it, grants exactly this.
    client.RbacAuthorizationV1Api(admin_api).create_namespaced_role_binding(ns, LAB_BINDING)
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the local cluster may lag behind a new binding, as a real authorizer's cache does
        try:
            async with connect(local_cluster, ns, name, identity="laborchestrator") as ws, asyncio.timeout(5):
                assert (await ws.recv()).startswith(b"SSH-2.0-")
            break
        except InvalidStatus:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_udp_is_refused_by_name(local_cluster, running_vmi):
    ns, name, _ = running_vmi
    status, body = await refusal(local_cluster, ns, name, tail="53/udp")
    assert status == 400 and "tcp only" in body["message"]


async def test_deleting_the_vmi_ends_the_stream(local_cluster, running_vmi, vmis):
    ns, name, _ = running_vmi
    async with connect(local_cluster, ns, name) as ws:
        async with asyncio.timeout(5):
            await ws.recv()
        vmis.delete(ns, name)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
