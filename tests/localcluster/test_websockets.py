"""console/vnc websockets as virt-api serves them, through the `none` runtime's stand-in guest.

Subprotocol `plain.kubevirt.io` echoed, binary frames only (text dropped), 400 before the upgrade on
a VMI that is not running and 409 on the console of a Failed one, a second connection kicks the
first without a close frame, `preserveSession=true` on a busy VNC gets 500. Each follows the upstream
file it names, in kubevirt/kubevirt (pkg/virt-api/rest/, pkg/virt-handler/rest/console.go).
"""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
import websockets
from kubernetes import client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.localcluster.lc_helpers import small_vmi

PROTOCOL = "plain.kubevirt.io"


def ws_url(cluster, ns: str, name: str, kind: str, query: str = "") -> str:
    base = cluster.url.replace("https://", "wss://")
    vmi = f"namespaces/{ns}/virtualmachineinstances/{name}"
    return f"{base}/apis/subresources.kubevirt.io/v1/{vmi}/{kind}{query}"


def connect(
    cluster, ns: str, name: str, kind: str = "console", query: str = "", identity: str = "admin", **kw
):
    return websockets.connect(
        ws_url(cluster, ns, name, kind, query),
        ssl=cluster.ssl_context(),
        subprotocols=kw.pop("subprotocols", [PROTOCOL]),
        additional_headers={"Authorization": f"Bearer {cluster.token(identity)}"},
        open_timeout=5,
        **kw,
    )


@pytest.fixture
def running_vmi(vmis, ns) -> tuple[str, str]:
    vmis.create(ns, small_vmi("guest"))
    vmis.running(ns, "guest")
    return ns, "guest"


async def read_until(ws, needle: bytes, timeout: float = 3.0) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        while needle not in data:
            message = await ws.recv()
            assert isinstance(message, bytes), "the server sends binary frames only"
            data += message
    return data


async def test_console_echoes_the_subprotocol_and_relays_binary_frames(local_cluster, running_vmi):
    ns, name = running_vmi
    async with connect(local_cluster, ns, name) as ws:
        assert ws.subprotocol == PROTOCOL
        banner = await read_until(ws, b"\r\n")
        assert banner == f"localcluster none-runtime console {ns}/{name}\r\n".encode()
        await ws.send("text is dropped")
        await ws.send(b"echo me")
        assert await read_until(ws, b"echo me") == b"echo me"


async def test_without_the_subprotocol_offered_none_is_echoed(local_cluster, running_vmi):
    async with connect(local_cluster, *running_vmi, subprotocols=None) as ws:
        assert ws.subprotocol is None
        await read_until(ws, b"\r\n")


async def test_a_new_connection_kicks_the_old_one_without_a_close_frame(local_cluster, running_vmi):
    """pkg/virt-handler/rest/console.go (newStopChan closes the older stream's channel) and
    pkg/virt-api/rest/streamer.go (the raw streamer then closes the client's connection): the older
    client gets no close frame, so it sees 1006, not 1000."""
    for kind, greeting in (("console", b"\r\n"), ("vnc", b"RFB")):
        async with connect(local_cluster, *running_vmi, kind=kind) as first:
            await read_until(first, greeting)
            async with connect(local_cluster, *running_vmi, kind=kind) as second:
                await read_until(second, greeting)
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(3):
                        while True:
                            await first.recv()
                assert closed.value.rcvd is None, closed.value.rcvd  # no close frame received
                assert first.close_code == 1006
                if kind == "console":
                    await second.send(b"still here")
                    await read_until(second, b"still here")


async def test_preserve_session_on_a_busy_vnc_is_a_500(local_cluster, running_vmi):
    """pkg/virt-handler/rest/console.go refuses with 503 "Active VNC connection. Request denied.";
    pkg/virt-api/rest/dialers.go wraps the failed dial in NewInternalError (500), the message
    enriched by client-go's EnrichError (kubevirt/typed/core/v1/async.go)."""
    async with connect(local_cluster, *running_vmi, kind="vnc") as first:
        await read_until(first, b"RFB")
        with pytest.raises(InvalidStatus) as err:
            async with connect(local_cluster, *running_vmi, kind="vnc", query="?preserveSession=true"):
                pass
        response = err.value.response
        assert response.status_code == 500
        status = json.loads(response.body)
        assert (status["kind"], status["reason"], status["code"]) == ("Status", "InternalError", 500)
        assert status["message"] == (
            "Internal error occurred: Can't connect to websocket (503): websocket: bad handshake: "
            "application info: Active VNC connection. Request denied."
        )
        # The first session was preserved.
        await first.send(b"RFB 003.008\n")
        await read_until(first, b"\x01\x01")


async def test_preserve_session_is_a_vnc_parameter_only(local_cluster, running_vmi):
    """virt-handler's SerialHandler reads no preserveSession: a second console kicks the first."""
    async with connect(local_cluster, *running_vmi) as first:
        await read_until(first, b"\r\n")
        async with connect(local_cluster, *running_vmi, query="?preserveSession=true") as second:
            await read_until(second, b"\r\n")
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(3):
                    while True:
                        await first.recv()


async def test_the_console_of_a_failed_vmi_is_a_409_and_its_vnc_a_400(local_cluster, running_vmi):
    """pkg/virt-api/rest/console.go (validateVMIForConsole: NewConflict for a Failed VMI) and
    vnc.go (vmiHasDisplay: NewBadRequest "VMI is not running")."""
    ns, name = running_vmi
    local_cluster.faults.fail_vmi(ns, name, "the guest crashed")
    with pytest.raises(InvalidStatus) as err:
        async with connect(local_cluster, ns, name):
            pass
    status = json.loads(err.value.response.body)
    assert (err.value.response.status_code, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "{name}": '
        "VMI is in failed status"
    )
    assert status["details"] == {"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"}
    with pytest.raises(InvalidStatus) as err:
        async with connect(local_cluster, ns, name, kind="vnc"):
            pass
    assert err.value.response.status_code == 400
    assert json.loads(err.value.response.body)["message"] == "VMI is not running"


async def test_a_vmi_that_is_not_running_answers_400_before_the_upgrade(local_cluster, core, vmis, ns):
    quota = {"metadata": {"name": "none"}, "spec": {"hard": {"requests.memory": "1Mi"}}}
    core.create_namespaced_resource_quota(ns, quota)
    vmis.create(ns, small_vmi("pending"))  # stays Pending: no room for its launcher pod
    for kind in ("console", "vnc"):
        with pytest.raises(InvalidStatus) as err:
            async with connect(local_cluster, ns, "pending", kind=kind):
                pass
        assert err.value.response.status_code == 400
        assert b"VMI is not running" in err.value.response.body


async def test_a_missing_vmi_is_404(local_cluster, ns):
    with pytest.raises(InvalidStatus) as err:
        async with connect(local_cluster, ns, "nothing"):
            pass
    assert err.value.response.status_code == 404


async def test_websockets_need_rbac_get_on_the_subresource(local_cluster, running_vmi):
    with pytest.raises(InvalidStatus) as err:
        async with connect(local_cluster, *running_vmi, identity="nobody"):
            pass
    assert err.value.response.status_code == 403


async def test_vnc_speaks_rfb_and_sends_a_non_blank_frame(local_cluster, running_vmi):
    """A minimal RFB 3.8 exchange, as noVNC does it: security None, ServerInit, a raw update."""
    async with connect(local_cluster, *running_vmi, kind="vnc") as ws:
        buffer = bytearray()

        async def take(n: int) -> bytes:
            async with asyncio.timeout(3):
                while len(buffer) < n:
                    buffer.extend(await ws.recv())
            out = bytes(buffer[:n])
            del buffer[:n]
            return out

        assert await take(12) == b"RFB 003.008\n"
        await ws.send(b"RFB 003.008\n")
        assert await take(2) == b"\x01\x01"  # one security type: None
        await ws.send(b"\x01")
        assert await take(4) == b"\x00\x00\x00\x00"
        await ws.send(b"\x01")  # ClientInit, shared
        width, height = struct.unpack(">HH", await take(4))
        await take(16)  # pixel format
        (name_length,) = struct.unpack(">I", await take(4))
        await take(name_length)
        await ws.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw
        await ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # full update request
        message_type, rects = struct.unpack(">BxH", await take(4))
        assert (message_type, rects) == (0, 1)
        x, y, w, h, encoding = struct.unpack(">HHHHi", await take(12))
        assert (x, y, w, h, encoding) == (0, 0, width, height, 0)
        pixels = await take(w * h * 4)
        assert len(set(pixels[i : i + 4] for i in range(0, len(pixels), 4))) > 2


async def test_websocket_token_can_travel_as_a_subprotocol(local_cluster, running_vmi):
    """Browsers cannot set headers on websockets; the API server accepts the bearer token as a subprotocol."""
    import base64

    token = base64.urlsafe_b64encode(local_cluster.token("admin").encode()).decode().rstrip("=")
    async with websockets.connect(
        ws_url(local_cluster, *running_vmi, "console"),
        ssl=local_cluster.ssl_context(),
        subprotocols=[PROTOCOL, f"base64url.bearer.authorization.k8s.io.{token}"],
        open_timeout=5,
    ) as ws:
        assert ws.subprotocol == PROTOCOL
        await read_until(ws, b"\r\n")


def test_plain_get_of_console_is_400(admin_api, running_vmi):
    from tests.localcluster.lc_helpers import vmi_subresource

    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, *running_vmi, "console", method="GET")
    assert err.value.status == 400
