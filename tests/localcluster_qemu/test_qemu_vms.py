"""Real VMs behind the local cluster's API: three demo VMs booted once for the module.

Namespace A holds `alpha` and `beta` (one lab), namespace B holds `gamma` (another lab). Each
namespace has a headless Service `lab` selecting its VMIs, which set `subdomain: lab`, as
labs/manifests.py builds them. Everything goes through the real HTTP API: the official client for
objects, websockets for console and VNC. The guests take their addresses by DHCP.
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster.demoimage import BANNER
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import (
    TOOLS,
    Stream,
    demo_images,
    demo_vmi,
    dnsmasq_pids,
    get_subresource,
    host_address,
    png_colours,
    put_subresource,
    qemu_pids,
    qemu_switch_dirs,
    rfb_framebuffer,
    switch_pids,
    wait_for,
)

pytestmark = pytest.mark.qemu

VMI = ("kubevirt.io", "v1")
BOOT_TIMEOUT = 150  # three TCG guests on two shared cores


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    images = demo_images()
    with start_local_cluster(tmp_path_factory.mktemp("qemu-cluster"), runtime="qemu", images=images) as c:
        yield c


@pytest.fixture(scope="module")
def api(cluster: LocalCluster) -> Any:
    return cluster.api_client("admin")


@pytest.fixture(scope="module")
def labs(cluster: LocalCluster, api: Any) -> dict[str, Any]:
    """Create both namespaces and their VMIs, wait until all run; names and addresses by VM."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    suffix = secrets.token_hex(3)
    namespaces = {"a": f"qemu-lab-a-{suffix}", "b": f"qemu-lab-b-{suffix}"}
    placement = {"alpha": "a", "beta": "a", "gamma": "b"}
    for lab, ns in namespaces.items():
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_service(
            ns,
            {
                "metadata": {"name": "lab"},
                "spec": {"clusterIP": "None", "selector": {"lab": lab}, "publishNotReadyAddresses": True},
            },
        )
    # alpha's login comes from a Secret, the way labs/manifests.py keeps passwords out of the VMI.
    userdata = base64.b64encode(b"#cloud-config\npassword: demo-pass-1\n").decode()
    core.create_namespaced_secret(
        namespaces["a"], {"metadata": {"name": "alpha-userdata"}, "data": {"userdata": userdata}}
    )
    for vm, lab in placement.items():
        body = demo_vmi(
            vm,
            user_data_secret="alpha-userdata" if vm == "alpha" else None,
            labels={"app": "qemu-test", "lab": lab},
            subdomain="lab",
        )
        custom.create_namespaced_custom_object(*VMI, namespaces[lab], "virtualmachineinstances", body)

    def all_running() -> dict[str, dict[str, Any]] | None:
        found = {}
        for vm, lab in placement.items():
            obj = custom.get_namespaced_custom_object(*VMI, namespaces[lab], "virtualmachineinstances", vm)
            status = obj.get("status") or {}
            assert status.get("phase") != "Failed", f"{vm} failed: {status}"
            if status.get("phase") != "Running":
                return None
            found[vm] = obj
        return found

    vmis = wait_for(all_running, 60, "QEMU processes of three VMIs")
    return {
        "ns": namespaces,
        "where": {vm: namespaces[lab] for vm, lab in placement.items()},
        "ip": {vm: obj["status"]["interfaces"][0]["ipAddress"] for vm, obj in vmis.items()},
        "mac": {vm: obj["status"]["interfaces"][0]["mac"] for vm, obj in vmis.items()},
    }


async def console(cluster: LocalCluster, labs: dict[str, Any], vm: str) -> Stream:
    return await Stream.open(
        cluster.url, cluster.token("admin"), cluster.ssl_context(), labs["where"][vm], vm, "console"
    )


async def booted_console(cluster: LocalCluster, labs: dict[str, Any], vm: str) -> Stream:
    """A console on which the guest has printed its banner and a prompt.

    The banner names the host name and address the guest got by DHCP: they must be the VMI's
    name and the address its status reports.
    """
    stream = await console(cluster, labs, vm)
    await stream.read_until(f"{BANNER} {vm} ({labs['ip'][vm]})".encode(), BOOT_TIMEOUT)
    await stream.read_until(f"root@{vm}:/# ".encode(), 30)
    return stream


def test_running_vmis_report_addresses_of_their_namespace_subnet(labs: dict[str, Any]) -> None:
    ip = labs["ip"]
    assert ip["alpha"] != ip["beta"]
    assert ip["alpha"].rsplit(".", 1)[0] == ip["beta"].rsplit(".", 1)[0], "one lab, one subnet"
    assert all(qemu_pids(f"{labs['where'][vm]}/{vm}") for vm in ip), "one QEMU process per VMI"


async def test_console_shows_the_boot_banner_and_runs_commands(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    stream = await booted_console(cluster, labs, "alpha")
    try:
        out = await stream.run("ip addr show eth0 && hostname", "DONE")
        assert f"inet {labs['ip']['alpha']}/24" in out
        assert "\nalpha" in out.replace("\r", "")
        assert "DONE-0-0" in out
        # cloud-init: the Secret's password reached the guest through the cidata disk.
        check = (
            "S=$(grep '^lab:' /etc/shadow | cut -d: -f2); SALT=$(echo \"$S\" | cut -d'$' -f3); "
            '[ "$(mkpasswd -m sha512 -S "$SALT" demo-pass-1)" = "$S" ]'
        )
        out = await stream.run(check, "PW")
        assert "PW-0-0" in out
    finally:
        await stream.close()


async def test_vnc_shows_a_non_blank_screen(cluster: LocalCluster, labs: dict[str, Any]) -> None:
    stream = await Stream.open(
        cluster.url, cluster.token("admin"), cluster.ssl_context(), labs["where"]["alpha"], "alpha", "vnc"
    )
    try:
        width, height, pixels = await rfb_framebuffer(stream)
    finally:
        await stream.close()
    # The guest's framebuffer console has taken over from the firmware's 720x400 text mode.
    assert width > 720 and height > 400, f"still the firmware screen: {width}x{height}"
    lit = sum(1 for i in range(0, len(pixels), 4) if pixels[i : i + 3] != b"\0\0\0")
    assert lit > 2000, f"only {lit} non-black pixels: blank screen"


def test_screenshot_is_a_png_of_the_text_console(cluster: LocalCluster, labs: dict[str, Any]) -> None:
    png = get_subresource(
        cluster.url,
        cluster.token("admin"),
        cluster.ssl_context(),
        labs["where"]["alpha"],
        "alpha",
        "vnc/screenshot",
    )
    assert len(png_colours(png)) > 1


async def test_guests_get_the_reported_address_router_and_dns_by_dhcp(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    """KubeVirt's bridge binding: the pod IP, its gateway, cluster DNS and the pod's search path,
    with the subdomain first (kubevirt pkg/network/dhcp/configurator.go, dns/resolveconf.go)."""
    stream = await booted_console(cluster, labs, "beta")
    try:
        out = await stream.run("ip -4 addr show eth0; ip route; cat /etc/resolv.conf", "NET")
    finally:
        await stream.close()
    ns, ip = labs["where"]["beta"], labs["ip"]["beta"]
    gateway = ip.rsplit(".", 1)[0] + ".1"
    assert f"inet {ip}/24" in out
    assert f"default via {gateway} dev eth0" in out
    assert "nameserver 10.96.0.10" in out
    assert f"search lab.{ns}.svc.cluster.local {ns}.svc.cluster.local svc.cluster.local cluster.local" in out


async def test_machines_of_one_lab_reach_each_other_by_name(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    beta = await booted_console(cluster, labs, "beta")
    await beta.close()
    alpha = await booted_console(cluster, labs, "alpha")
    try:
        out = await alpha.run("ping -c 2 -W 3 beta", "PING", timeout=40)
        fqdn = await alpha.run(f"nslookup beta.lab.{labs['where']['beta']}.svc.cluster.local", "NS")
    finally:
        await alpha.close()
    assert f"PING beta ({labs['ip']['beta']})" in out, out
    assert "PING-0-0" in out, out
    assert f"Address: {labs['ip']['beta']}" in fqdn, fqdn


async def test_names_resolve_across_labs_but_traffic_does_not_cross(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    """Cluster DNS answers every namespace's names, as kube-dns does; the network stops the packets."""
    gamma = await booted_console(cluster, labs, "gamma")
    try:
        name = f"alpha.lab.{labs['where']['alpha']}.svc.cluster.local"
        out = await gamma.run(f"ping -c 2 -W 2 {name}", "PING", timeout=40)
    finally:
        await gamma.close()
    assert f"({labs['ip']['alpha']})" in out, out
    assert "100% packet loss" in out, out


async def test_lab_network_reaches_neither_the_host_nor_the_internet(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    host_ip = host_address()
    alpha = await booted_console(cluster, labs, "alpha")
    try:
        outside = await alpha.run(f"ping -c 1 -W 2 {host_ip}; ping -c 1 -W 2 1.1.1.1", "OUT", timeout=40)
        gateway = labs["ip"]["alpha"].rsplit(".", 1)[0] + ".1"
        lab_side = await alpha.run(f"ping -c 1 -W 3 {gateway}", "GW", timeout=40)
        external_name = await alpha.run("nslookup deb.debian.org", "EXT", timeout=40)
    finally:
        await alpha.close()
    assert outside.count("100% packet loss") == 2, outside
    assert "GW-0-0" in lab_side, "the gateway (the lab network's own side) answers"
    # No upstream resolver either (a real cluster's DNS would resolve it; its NetworkPolicy stops
    # the traffic): nothing leaves the lab network.
    assert "Address:" not in external_name.split("Address:\t10.96.0.10:53", 1)[-1], external_name


async def test_dhcp_answers_only_the_guests_of_its_own_lab(
    cluster: LocalCluster, labs: dict[str, Any]
) -> None:
    """gamma (lab B) takes alpha's MAC: lab B's DHCP server does not know it and lab A's cannot hear
    it, so no lease; with its own MAC back, gamma gets its own address again."""
    gamma = await booted_console(cluster, labs, "gamma")
    dhcp = "udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 3 -T 1"

    def with_mac(mac: str) -> str:
        return f"ip link set eth0 down; ip link set eth0 address {mac}; ip link set eth0 up; {dhcp}"

    try:
        borrowed = await gamma.run(with_mac(labs["mac"]["alpha"]), "STOLEN", timeout=60)
        own = await gamma.run(with_mac(labs["mac"]["gamma"]) + " && ip -4 addr show eth0", "OWN", timeout=60)
    finally:
        await gamma.close()
    assert "STOLEN-0-1" in borrowed, borrowed  # udhcpc -n: no lease
    assert "OWN-0-0" in own, own
    assert f"inet {labs['ip']['gamma']}/24" in own, own


async def test_machines_of_another_lab_are_unreachable(cluster: LocalCluster, labs: dict[str, Any]) -> None:
    gamma = await booted_console(cluster, labs, "gamma")
    try:
        # Give gamma an address in lab A's subnet too, so only the separate L2 segment can stop it.
        spare = labs["ip"]["alpha"].rsplit(".", 1)[0] + ".250"
        await gamma.run(f"ip addr add {spare}/24 dev eth0", "ADD")
        out = await gamma.run(f"ping -c 2 -W 2 {labs['ip']['alpha']}", "PING", timeout=40)
    finally:
        await gamma.close()
    assert "100% packet loss" in out, out
    assert "PING-0-1" in out, out


async def test_pause_stops_the_guest_and_unpause_resumes_it(
    cluster: LocalCluster, labs: dict[str, Any], api: Any
) -> None:
    ns, token, ctx = labs["where"]["beta"], cluster.token("admin"), cluster.ssl_context()
    stream = await booted_console(cluster, labs, "beta")
    try:
        await stream.send(b"while true; do echo T$((1))CK; sleep 0.3; done\n")
        await stream.read_until(b"T1CK", 30)
        assert put_subresource(cluster.url, token, ctx, ns, "beta", "pause") == 200
        await stream.read_for(1.0)  # what was already on its way
        assert b"T1CK" not in await stream.read_for(3.0), "a paused guest kept printing"
        custom = client.CustomObjectsApi(api)
        vmi = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "beta")
        assert {"type": "Paused", "status": "True"}.items() <= next(
            c for c in vmi["status"]["conditions"] if c["type"] == "Paused"
        ).items()
        assert put_subresource(cluster.url, token, ctx, ns, "beta", "unpause") == 200
        await stream.read_until(b"T1CK", 30)
        await stream.send(b"\x03")
    finally:
        await stream.close()


def test_deleting_a_namespace_ends_its_qemu_processes_and_network(labs: dict[str, Any], api: Any) -> None:
    guest = f"{labs['ns']['b']}/gamma"
    pids, switches = qemu_pids(guest), qemu_switch_dirs(guest)
    assert pids and switch_pids(switches), "gamma's QEMU and its namespace's vde_switch run"
    assert len(dnsmasq_pids(switches)) == 2, "the lab network's DHCP and DNS servers run"
    core = client.CoreV1Api(api)
    core.delete_namespace(labs["ns"]["b"])

    def gone() -> bool:
        try:
            core.read_namespace(labs["ns"]["b"])
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 30, "the namespace to disappear")
    wait_for(
        lambda: not qemu_pids(guest) and not switch_pids(switches) and not dnsmasq_pids(switches),
        10,
        "QEMU, vde_switch and dnsmasq to exit",
    )
    # Lab A is untouched.
    assert qemu_pids(f"{labs['ns']['a']}/alpha")


def test_an_image_no_registry_serves_cannot_be_pulled(cluster: LocalCluster, api: Any) -> None:
    """As a kubelet that cannot reach the registry: ErrImagePull on the VMI with the pull's message,
    no QEMU started (KubeVirt pkg/virt-controller/watch/vmi/lifecycle.go checkForContainerImageError).
    tests/localcluster_qemu/test_containerdisk_pulls.py covers registries that answer."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"qemu-bad-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    with socket.socket() as closed:  # a port nobody listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        reference = f"127.0.0.1:{closed.getsockname()[1]}/no/such:image"
    try:
        custom.create_namespaced_custom_object(
            *VMI, ns, "virtualmachineinstances", demo_vmi("broken", image=reference)
        )

        def not_pulled() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "broken")
            conditions = (obj.get("status") or {}).get("conditions") or []
            synchronized = next((c for c in conditions if c["type"] == "Synchronized"), None)
            return obj if synchronized and synchronized["reason"] == "ErrImagePull" else None

        status = wait_for(not_pulled, 30, "the image pull to fail")["status"]
        assert status["phase"] == "Scheduling"
        synchronized = next(c for c in status["conditions"] if c["type"] == "Synchronized")
        assert "connection refused" in synchronized["message"]
        assert not qemu_pids(f"{ns}/broken")
    finally:
        core.delete_namespace(ns)


def more_memory_than_this_host() -> str:
    """More than RAM and swap together: the kernel refuses such an allocation outright."""
    sizes = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        sizes[key] = int(value.split()[0]) * 1024
    return f"{(sizes['MemTotal'] + sizes.get('SwapTotal', 0)) // 2**30 + 8}Gi"


def test_memory_beyond_the_host_is_unschedulable(cluster: LocalCluster, api: Any) -> None:
    """The host is the node: a launcher pod asking for more memory than it has never schedules."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"qemu-huge-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        vmi = demo_vmi("huge", memory=more_memory_than_this_host())
        custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", vmi)

        def unschedulable() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "huge")
            conditions = (obj.get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "PodScheduled"), None)

        scheduled = wait_for(unschedulable, 30, "the pod to be unschedulable")
        assert scheduled["reason"] == "Unschedulable"
        assert scheduled["message"].startswith("0/1 nodes are available: 1 Insufficient memory.")
        assert not qemu_pids(f"{ns}/huge")
    finally:
        core.delete_namespace(ns)


def test_a_binding_the_local_cluster_does_not_reproduce_is_not_run(api: Any) -> None:
    """Masquerade would need the guest at 10.0.2.2 behind NAT: the launcher refuses it, reported as
    any launcher failure is (Synchronized=False), never run with the bridge network a real cluster
    would not give it."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"qemu-nat-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        body = demo_vmi("natted")
        body["spec"]["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}}]
        custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", body)

        def sync_failed() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "natted")
            conditions = (obj.get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "Synchronized"), None)

        synchronized = wait_for(sync_failed, 30, "the launcher to refuse it")
        assert synchronized["status"] == "False"
        assert "only the bridge binding" in synchronized["message"]
        assert "not masquerade" in synchronized["message"]
        assert not qemu_pids(f"{ns}/natted")
    finally:
        core.delete_namespace(ns)


def test_qemu_that_cannot_allocate_the_guest_memory_is_a_sync_failure(
    cluster: LocalCluster, api: Any
) -> None:
    """A node that claims more memory than this host has: QEMU itself fails to allocate the guest's
    RAM, and the VMI reports it as virt-handler does (pkg/virt-handler/vm.go handleSyncError)."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"qemu-oom-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    cluster.faults.node(memory="1Ei")
    try:
        vmi = demo_vmi("oom", memory=more_memory_than_this_host())
        custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", vmi)

        def sync_failed() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "oom")
            conditions = (obj.get("status") or {}).get("conditions") or []
            return obj if any(c["type"] == "Synchronized" for c in conditions) else None

        status = wait_for(sync_failed, 60, "QEMU to fail")["status"]
        assert status["phase"] == "Scheduled"
        synchronized = next(c for c in status["conditions"] if c["type"] == "Synchronized")
        assert synchronized["reason"] == "Synchronizing with the Domain failed."
        assert synchronized["message"].startswith("server error. command SyncVMI failed: ")
        assert "Cannot allocate memory" in synchronized["message"]
        events = core.list_namespaced_event(ns, field_selector="involvedObject.name=oom").items
        assert any(e.reason == "SyncFailed" and e.type == "Warning" for e in events)
        assert not qemu_pids(f"{ns}/oom")
    finally:
        cluster.faults.clear()
        core.delete_namespace(ns)


def test_server_exit_ends_every_vm(labs: dict[str, Any], cluster: LocalCluster) -> None:
    """Last in the module: stopping the server must leave no QEMU behind."""
    guests = [f"{labs['ns']['a']}/alpha", f"{labs['ns']['a']}/beta"]
    assert all(qemu_pids(g) for g in guests)
    switches = qemu_switch_dirs(guests[0])
    assert switch_pids(switches) and dnsmasq_pids(switches)
    cluster.stop()
    deadline = time.monotonic() + 15
    while any(qemu_pids(g) for g in guests) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(qemu_pids(g) for g in guests)
    assert not switch_pids(switches) and not dnsmasq_pids(switches), "the lab network outlived the server"
