"""Conformance: each behaviour of a real cluster (from KubeVirt's and Kubernetes' sources) that the
local cluster reproduces, checked through
the official `kubernetes` client over real HTTPS (CA verified) against the session's server.

Most calls are made as `admin` so these tests state the server's semantics independently of the
application's role; RBAC has its own tests (test_rbac.py).
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client, watch

from tests.localcluster.lc_helpers import (
    EXAMPLES,
    KV,
    call,
    example,
    small_vmi,
    status_of,
    vmi_subresource,
    wait_for,
)

EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def test_the_five_kubevirt_examples_exist():
    assert len(EXAMPLE_NAMES) == 5


# -- VirtualMachineInstance validation -------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_kubevirt_examples_are_accepted_and_run(vmis, ns, name):
    """Each manifest of KubeVirt's own examples/ is valid, so the cluster accepts and runs it."""
    created = vmis.create(ns, example(name))
    assert created["metadata"]["namespace"] == ns
    running = vmis.running(ns, created["metadata"]["name"])
    assert running["status"]["interfaces"][0]["ipAddress"].startswith("10.244.")


def test_vmi_without_memory_is_rejected(vmis, ns):
    """Admission rejects a VMI without memory (guest, requests.memory, hugepages): 422 'no memory ...'."""
    body = small_vmi("nomem")
    del body["spec"]["domain"]["memory"]
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert "no memory requested" in status["message"]
    assert status["details"]["causes"][0]["reason"]


def test_memory_in_resource_requests_is_enough(vmis, ns):
    body = small_vmi("reqmem")
    del body["spec"]["domain"]["memory"]
    body["spec"]["domain"]["resources"] = {"requests": {"memory": "64Mi"}}
    assert vmis.create(ns, body)["metadata"]["name"] == "reqmem"


def test_interface_must_name_a_network(vmis, ns):
    """Every domain.devices.interfaces[].name must match a spec.networks[].name (422 with the field)."""
    body = small_vmi("badnet")
    body["spec"]["networks"][0]["name"] = "elsewhere"
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    causes = status_of(err.value)["details"]["causes"]
    assert err.value.status == 422
    assert "spec.domain.devices.interfaces[0].name" in {c["field"] for c in causes}


@pytest.mark.parametrize(
    ("interface", "network", "message", "field"),
    [
        (
            {"name": "default", "bridge": {}, "masquerade": {}},
            {"name": "default", "pod": {}},
            "logical default interface must have exactly one binding method or binding plugin",
            "spec.domain.devices.interfaces[0]",
        ),
        (
            {"name": "default"},
            {"name": "default", "pod": {}},
            "logical default interface must have exactly one binding method or binding plugin",
            "spec.domain.devices.interfaces[0]",
        ),
        (
            {"name": "net1", "masquerade": {}},
            {"name": "net1", "multus": {"networkName": "lab-net"}},
            "Masquerade interface only implemented with pod network",
            "spec.domain.devices.interfaces[0].name",
        ),
    ],
)
def test_interface_bindings_are_admitted_as_kubevirt_does(vmis, ns, interface, network, message, field):
    """kubevirt pkg/network/admitter/binding.go: one binding per interface, masquerade on pod only."""
    body = small_vmi("vm1")
    body["spec"]["domain"]["devices"]["interfaces"] = [interface]
    body["spec"]["networks"] = [network]
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    assert err.value.status == 422
    causes = status_of(err.value)["details"]["causes"]
    assert {"reason": "FieldValueInvalid", "message": message, "field": field} in causes


def test_bridge_and_masquerade_on_the_pod_network_are_both_accepted(vmis, ns):
    # permitBridgeInterfaceOnPodNetwork defaults to true (kubevirt pkg/virt-config/virt-config.go).
    for name, binding in (("bridged", "bridge"), ("natted", "masquerade")):
        body = small_vmi(name)
        body["spec"]["domain"]["devices"]["interfaces"] = [{"name": "default", binding: {}}]
        vmis.create(ns, body)
        assert vmis.running(ns, name)["status"]["interfaces"][0]["ipAddress"].startswith("10.244.")


def test_disk_must_name_a_volume(vmis, ns):
    """Every domain.devices.disks[].name must match a spec.volumes[].name."""
    body = small_vmi("baddisk")
    body["spec"]["domain"]["devices"]["disks"][0]["name"] = "nothing"
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    assert err.value.status == 422
    assert "'nothing' not found" in status_of(err.value)["message"]


def test_input_devices_are_tablets_on_usb_or_virtio(vmis, ns):
    """Only tablets on the usb or virtio bus (kubevirt pkg/virt-api/webhooks/validating-webhook/
    admitters/vmi-create-admitter.go, validateInputDevices): 422 with a cause per field."""
    body = small_vmi("badinput")
    body["spec"]["domain"]["devices"]["inputs"] = [
        {"name": "keys", "type": "keyboard", "bus": "usb"},
        {"name": "mouse", "type": "tablet", "bus": "ps2"},
    ]
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    causes = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert causes == {
        "spec.domain.devices.inputs[0].type": "Input device can have only tablet type.",
        "spec.domain.devices.inputs[1].bus": "Input device can have only virtio or usb bus.",
    }


def test_an_input_device_defaults_to_the_usb_bus(vmis, ns):
    """A tablet without a bus goes on USB (kubevirt staging/src/kubevirt.io/api/core/v1/defaults.go,
    setDefaults_Input); one on virtio keeps its bus. (`type` is required by the schema.)"""
    body = small_vmi("tablets")
    body["spec"]["domain"]["devices"]["inputs"] = [
        {"name": "pointer", "type": "tablet"},
        {"name": "fast", "type": "tablet", "bus": "virtio"},
    ]
    created = vmis.create(ns, body)
    assert created["spec"]["domain"]["devices"]["inputs"] == [
        {"name": "pointer", "type": "tablet", "bus": "usb"},
        {"name": "fast", "type": "tablet", "bus": "virtio"},
    ]


def test_schema_violations_answer_invalid_with_causes(vmis, ns):
    """Schema failures: 422 Invalid, details.causes = [{reason, message, field}] for each problem."""
    body = small_vmi("badschema")
    body["spec"]["domain"]["cpu"] = {"cores": "two"}
    del body["spec"]["domain"]["devices"]["disks"][0]["name"]
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    status = status_of(err.value)
    assert (status["code"], status["reason"], status["kind"]) == (422, "Invalid", "Status")
    fields = {c["field"]: c["reason"] for c in status["details"]["causes"]}
    assert fields["spec.domain.cpu.cores"] == "FieldValueTypeInvalid"
    assert fields["spec.domain.devices.disks[0].name"] == "FieldValueRequired"


def test_spec_domain_devices_is_required(vmis, ns):
    body = small_vmi("nodevices")
    del body["spec"]["domain"]["devices"]
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body)
    assert "spec.domain.devices" in {c["field"] for c in status_of(err.value)["details"]["causes"]}


def test_unknown_fields_are_dropped_with_a_warning_by_default(vmis, ns, admin_api):
    """The structural schema prunes unknown fields; the default fieldValidation (Warn) says so."""
    body = small_vmi("extra")
    body["spec"]["domain"]["notAField"] = True
    created = vmis.create(ns, body)
    assert "notAField" not in created["spec"]["domain"]
    assert "notAField" not in vmis.get(ns, "extra")["spec"]["domain"]


def test_unknown_fields_are_rejected_with_strict_field_validation(vmis, ns):
    body = small_vmi("strict")
    body["spec"]["domain"]["notAField"] = True
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, body, field_validation="Strict")
    assert err.value.status == 400
    assert 'unknown field "spec.domain.notAField"' in status_of(err.value)["message"]


@pytest.mark.parametrize("name", ["Upper", "under_score", "-leading", "x" * 254])
def test_names_must_be_rfc1123(vmis, ns, name):
    with pytest.raises(client.ApiException) as err:
        vmis.create(ns, small_vmi(name))
    assert err.value.status == 422
    assert status_of(err.value)["details"]["causes"][0]["field"] == "metadata.name"


def test_vmi_spec_cannot_be_changed_after_creation(vmis, ns):
    vmis.create(ns, small_vmi("fixed"))
    with pytest.raises(client.ApiException) as err:
        vmis.patch(ns, "fixed", {"spec": {"domain": {"memory": {"guest": "128Mi"}}}})
    assert err.value.status == 422
    assert "update of VMI object is restricted" in status_of(err.value)["message"]
    labelled = vmis.patch(ns, "fixed", {"metadata": {"labels": {"seen": "yes"}}})
    assert labelled["metadata"]["labels"]["seen"] == "yes"


def test_custom_resources_refuse_strategic_merge_patches(custom, vmis, ns):
    """apiextensions-apiserver (pkg/apiserver/customresource_handler.go) offers custom resources JSON
    patch, merge patch and apply only: a strategic merge patch of a VMI is 415."""
    vmis.create(ns, small_vmi("labelled"))
    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object(
            *KV,
            ns,
            "virtualmachineinstances",
            "labelled",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415
    merged = custom.patch_namespaced_custom_object(
        *KV,
        ns,
        "virtualmachineinstances",
        "labelled",
        {"metadata": {"labels": {"a": "b"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["metadata"]["labels"]["a"] == "b"


# -- VMI lifecycle ---------------------------------------------------------------------------------
def test_vmi_phases_progress_to_running_with_an_ip(custom, vmis, ns):
    """Pending → Scheduling → Scheduled → Running, then status.interfaces carries the pod IP."""
    created = vmis.create(ns, small_vmi("vm1", labels={"app": "lab"}))
    phases = []
    w = watch.Watch()
    for event in w.stream(
        custom.list_namespaced_custom_object,
        *KV,
        ns,
        "virtualmachineinstances",
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=5,
    ):
        phase = event["object"].get("status", {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        if phase == "Running":
            w.stop()
    assert phases == ["Pending", "Scheduling", "Scheduled", "Running"]
    vmi = vmis.get(ns, "vm1")
    iface = vmi["status"]["interfaces"][0]
    assert iface["name"] == "default"
    assert iface["ipAddress"].startswith("10.244.")
    assert iface["ipAddresses"] == [iface["ipAddress"]]
    assert iface["mac"].startswith("52:54:00:")
    # Without a guest agent virt-handler knows the pod interface, not the guest's own name for it
    # (kubevirt pkg/network/setup/netstat.go, pkg/network/controllers/vmi.go).
    assert iface["infoSource"] == "domain"
    assert iface["podInterfaceName"] == "eth0"
    assert "interfaceName" not in iface
    assert vmi["status"]["nodeName"]
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in vmi["status"]["conditions"] if c["type"] == "Ready"
    ).items()
    assert vmi["metadata"]["labels"]["app"] == "lab"


def test_vmis_of_a_namespace_get_distinct_addresses_in_one_subnet(vmis, ns):
    for name in ("a", "b"):
        vmis.create(ns, small_vmi(name))
    ips = [vmis.running(ns, name)["status"]["interfaces"][0]["ipAddress"] for name in ("a", "b")]
    assert ips[0] != ips[1]
    assert ips[0].rsplit(".", 1)[0] == ips[1].rsplit(".", 1)[0]


def test_list_vmis_by_label_selector(vmis, ns):
    vmis.create(ns, small_vmi("web", labels={"role": "web", "tier": "front"}))
    vmis.create(ns, small_vmi("db", labels={"role": "db"}))
    vmis.create(ns, small_vmi("plain"))

    def names(selector: str) -> list[str]:
        return sorted(i["metadata"]["name"] for i in vmis.list(ns, label_selector=selector)["items"])

    assert names("role=web") == ["web"]
    assert names("role!=web") == ["db", "plain"]
    assert names("role") == ["db", "web"]
    assert names("!role") == ["plain"]
    assert names("role in (web,db),tier!=back") == ["db", "web"]
    assert names("role notin (web)") == ["db", "plain"]


def test_deleting_a_vmi_returns_it_and_it_is_gone_once_stopped(vmis, ns):
    """Deletion goes through the VMI's finalizer: the response is the object, a GET then says 404."""
    vmis.create(ns, small_vmi("gone"))
    vmis.running(ns, "gone")
    deleted = vmis.delete(ns, "gone")
    assert deleted["metadata"]["name"] == "gone"
    assert deleted["metadata"]["deletionTimestamp"]

    def gone() -> bool:
        try:
            vmis.get(ns, "gone")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone)


# -- pause / unpause -------------------------------------------------------------------------------
def _paused(vmi: dict) -> bool:
    return any(c["type"] == "Paused" and c["status"] == "True" for c in vmi["status"].get("conditions", []))


def _when_paused(vmi: dict) -> dict | None:
    return vmi if _paused(vmi) else None


def _ready(vmi: dict) -> dict:
    return next(c for c in vmi["status"]["conditions"] if c["type"] == "Ready")


def test_pause_sets_the_paused_condition_and_phase_stays_running(vmis, ns, admin_api):
    vmis.create(ns, small_vmi("p"))
    vmis.running(ns, "p")
    vmi_subresource(admin_api, ns, "p", "pause")
    vmi = wait_for(lambda: _when_paused(vmis.get(ns, "p")))
    assert vmi["status"]["phase"] == "Running"
    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, ns, "p", "pause")
    assert (err.value.status, status_of(err.value)["message"]) == (409, "VMI is already paused")

    vmi_subresource(admin_api, ns, "p", "unpause")
    wait_for(lambda: not _paused(vmis.get(ns, "p")))
    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, ns, "p", "unpause")
    assert (err.value.status, status_of(err.value)["message"]) == (409, "VMI is not paused")


def test_the_paused_condition_comes_later_than_the_pause(vmis, ns, admin_api, local_cluster):
    """virt-api's pause returns once virt-handler paused the domain (pkg/virt-api/rest/lifecycle.go,
    PauseVMIRequestHandler); the `Paused` condition is written later, when virt-handler's next sync
    sees the paused domain (pkg/virt-handler/vm.go, updatePausedConditions). virt-api decides "already
    paused" / "not paused" from the condition alone, so in that window an unpause is 409 "VMI is not
    paused" and another pause is accepted (virt-launcher's PauseVMI does nothing to a paused domain)."""
    vmis.create(ns, small_vmi("late"))
    vmis.running(ns, "late")
    local_cluster.faults.slow_pause_condition(ms=30_000)  # a window no test machine's load closes

    vmi_subresource(admin_api, ns, "late", "pause")

    assert not _paused(vmis.get(ns, "late"))
    assert _ready(vmis.get(ns, "late"))["status"] == "True"
    vmi_subresource(admin_api, ns, "late", "pause")  # still accepted
    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, ns, "late", "unpause")
    assert (err.value.status, status_of(err.value)["message"]) == (409, "VMI is not paused")


def test_the_paused_condition_goes_later_than_the_unpause(vmis, ns, admin_api, local_cluster):
    """The same for an unpause: the condition stays until virt-handler's next sync, and a pause in
    that window is 409 "VMI is already paused" although the guest runs again."""
    vmis.create(ns, small_vmi("late"))
    vmis.running(ns, "late")
    vmi_subresource(admin_api, ns, "late", "pause")
    wait_for(lambda: _paused(vmis.get(ns, "late")))
    local_cluster.faults.slow_pause_condition(ms=30_000)

    vmi_subresource(admin_api, ns, "late", "unpause")

    assert _paused(vmis.get(ns, "late"))
    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, ns, "late", "pause")
    assert (err.value.status, status_of(err.value)["message"]) == (409, "VMI is already paused")


def test_a_paused_vmi_is_not_ready(vmis, ns, admin_api):
    """The launcher pod's readiness gate `kubevirt.io/virtual-machine-unpaused` turns False
    (pkg/virt-controller/watch/vmi/lifecycle.go, syncPausedConditionToPod), so the kubelet marks the
    pod not Ready with reason ReadinessGatesNotReady, and the VMI's Ready condition follows the pod's
    (syncReadyConditionFromPod). Unpaused, it is Ready again."""
    vmis.create(ns, small_vmi("rd"))
    vmis.running(ns, "rd")
    assert _ready(vmis.get(ns, "rd"))["status"] == "True"

    vmi_subresource(admin_api, ns, "rd", "pause")
    vmi = wait_for(lambda: _when_paused(vmis.get(ns, "rd")))

    ready = _ready(vmi)
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == (
        'the status of pod readiness gate "kubevirt.io/virtual-machine-unpaused" is not "True", but False'
    )
    vmi_subresource(admin_api, ns, "rd", "unpause")
    wait_for(lambda: _ready(vmis.get(ns, "rd"))["status"] == "True")
    assert not _paused(vmis.get(ns, "rd"))


def test_pause_of_a_missing_vmi_is_not_found(admin_api, ns):
    with pytest.raises(client.ApiException) as err:
        vmi_subresource(admin_api, ns, "nothing", "pause")
    assert err.value.status == 404


def test_screenshot_is_a_png(vmis, ns, admin_api):
    vmis.create(ns, small_vmi("shot"))
    vmis.running(ns, "shot")
    response = vmi_subresource(admin_api, ns, "shot", "vnc/screenshot", method="GET")
    assert response.data.startswith(b"\x89PNG\r\n\x1a\n")


# -- lifecycle metadata and errors ----------------------------------------------------------------
def test_objects_get_uid_resource_version_timestamp_and_generation(vmis, core, ns):
    vmi = vmis.create(ns, small_vmi("meta"))
    meta = vmi["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    secret = core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert int(secret.metadata.resource_version) > int(meta["resourceVersion"])
    assert secret.data == {"k": "dg=="}  # stringData is folded into base64 data, as on a real server
    assert secret.type == "Opaque"


def test_create_of_an_existing_name_is_409_already_exists(core, ns):
    core.create_namespaced_secret(ns, {"metadata": {"name": "dup"}})
    with pytest.raises(client.exceptions.ConflictException) as err:
        core.create_namespaced_secret(ns, {"metadata": {"name": "dup"}})
    status = status_of(err.value)
    assert status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "dup", "kind": "secrets"}


def test_missing_object_is_404_not_found(core, ns):
    with pytest.raises(client.exceptions.NotFoundException) as err:
        core.read_namespaced_secret("nothing", ns)
    assert status_of(err.value)["message"] == 'secrets "nothing" not found'
    with pytest.raises(client.exceptions.NotFoundException):
        core.delete_namespaced_secret("nothing", ns)


def test_update_with_a_stale_resource_version_is_409_conflict(core, ns):
    quota = core.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}
    )
    quota.spec.hard = {"pods": "2"}
    updated = core.replace_namespaced_resource_quota("q", ns, quota)
    assert updated.metadata.resource_version != quota.metadata.resource_version
    quota.spec.hard = {"pods": "3"}  # still carries the old resourceVersion
    with pytest.raises(client.exceptions.ConflictException) as err:
        core.replace_namespaced_resource_quota("q", ns, quota)
    assert status_of(err.value)["reason"] == "Conflict"


def test_merge_patch_and_delete_returns_a_success_status(core, ns):
    core.create_namespaced_secret(ns, {"metadata": {"name": "m", "labels": {"a": "1"}}})
    patched = core.patch_namespaced_secret("m", ns, {"metadata": {"labels": {"b": "2", "a": None}}})
    assert patched.metadata.labels == {"b": "2"}
    result = core.delete_namespaced_secret("m", ns)
    assert result["status"] == "Success"
    assert result["details"]["name"] == "m"


def test_network_policy_create_get_list_delete(admin_api, ns):
    net = client.NetworkingV1Api(admin_api)
    policy = {
        "metadata": {"name": "same-namespace-only"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [
                {"to": [{"podSelector": {}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
            ],
        },
    }
    created = net.create_namespaced_network_policy(ns, policy)
    assert created.metadata.generation == 1
    assert net.read_namespaced_network_policy("same-namespace-only", ns).spec.egress[1].ports[0].port == 53
    assert [p.metadata.name for p in net.list_namespaced_network_policy(ns).items] == ["same-namespace-only"]
    net.delete_namespaced_network_policy("same-namespace-only", ns)


def test_core_objects_are_validated_against_the_kubernetes_schemas(core, admin_api, ns):
    # The typed client checks this before sending; other clients (kubectl) rely on the server.
    bad_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"name": "p"}]},
    }
    with pytest.raises(client.ApiException) as err:
        call(admin_api, "POST", f"/api/v1/namespaces/{ns}/services", bad_service)
    assert err.value.status == 422
    assert "spec.ports[0].port" in {c["field"] for c in status_of(err.value)["details"]["causes"]}
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_resource_quota(
            ns, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "lots"}}}
        )
    assert err.value.status == 422


def test_services_get_a_cluster_ip(core, ns):
    svc = core.create_namespaced_service(
        ns, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    )
    assert svc.spec.cluster_ip.startswith("10.96.")
    assert svc.spec.ports[0].protocol == "TCP"


# -- namespaces ------------------------------------------------------------------------------------
def test_namespace_gets_the_immutable_metadata_name_label(core, ns):
    namespace = core.read_namespace(ns)
    assert namespace.metadata.labels["kubernetes.io/metadata.name"] == ns
    patched = core.patch_namespace(ns, {"metadata": {"labels": {"kubernetes.io/metadata.name": "other"}}})
    assert patched.metadata.labels["kubernetes.io/metadata.name"] == ns


def test_namespace_names_are_dns_labels(core):
    for name in ("Has-Upper", "dots.not.allowed", "x" * 64):
        with pytest.raises(client.ApiException) as err:
            core.create_namespace({"metadata": {"name": name}})
        assert err.value.status == 422


def test_namespace_deletion_goes_through_terminating(core, vmis, ns):
    """Delete returns the namespace in Terminating; creates inside it are 403 NamespaceTerminating,
    re-creating its name is 409; it disappears (404) once its VMIs are stopped; contents go with it."""
    slow = small_vmi("inside")
    slow["spec"]["terminationGracePeriodSeconds"] = 1  # its guest takes 1 s to stop: Terminating that long
    vmis.create(ns, slow)
    vmis.running(ns, "inside")
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})

    deleted = core.delete_namespace(ns)
    assert deleted["status"]["phase"] == "Terminating"
    assert core.read_namespace(ns).status.phase == "Terminating"

    with pytest.raises(client.exceptions.ForbiddenException) as err:
        core.create_namespaced_secret(ns, {"metadata": {"name": "late"}})
    causes = status_of(err.value)["details"]["causes"]
    assert causes[0]["reason"] == "NamespaceTerminating"
    with pytest.raises(client.exceptions.ConflictException) as err:
        core.create_namespace({"metadata": {"name": ns}})
    assert status_of(err.value)["reason"] == "AlreadyExists"

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.exceptions.NotFoundException:
            return True
        return False

    wait_for(gone)
    # Re-created under the same name, it is empty: everything in it was deleted.
    core.create_namespace({"metadata": {"name": ns}})
    assert core.list_namespaced_secret(ns).items == []
    assert vmis.list(ns)["items"] == []


def test_a_second_delete_of_a_terminating_namespace_answers_the_namespace(core, vmis, ns):
    """kubernetes/kubernetes pkg/registry/core/namespace/storage/storage.go, `REST.Delete`: once the
    namespace has a deletionTimestamp, a DELETE while `spec.finalizers` is not empty returns the
    namespace as it is (HTTP 200), not the 409 Conflict "The system is ensuring all content is
    removed from this namespace" of Kubernetes 1.16 and older (kubernetes/kubernetes#84122)."""
    slow = small_vmi("inside")
    slow["spec"]["terminationGracePeriodSeconds"] = 1  # keeps the namespace Terminating for a second
    vmis.create(ns, slow)
    vmis.running(ns, "inside")
    first = core.delete_namespace(ns)

    again, code, _ = core.delete_namespace_with_http_info(ns)

    assert code == 200
    assert again["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["status"]["phase"] == "Terminating"
    assert again["spec"]["finalizers"] == ["kubernetes"]


def test_create_in_a_missing_namespace_is_404(core):
    with pytest.raises(client.exceptions.NotFoundException) as err:
        core.create_namespaced_secret("no-such-namespace", {"metadata": {"name": "s"}})
    assert status_of(err.value)["details"] == {"name": "no-such-namespace", "kind": "namespaces"}


def test_list_namespaces_by_label(core, ns):
    core.patch_namespace(ns, {"metadata": {"labels": {"owner": ns}}})
    assert [n.metadata.name for n in core.list_namespace(label_selector=f"owner={ns}").items] == [ns]
    assert [n.metadata.name for n in core.list_namespace(field_selector=f"metadata.name={ns}").items] == [ns]


# -- quota -----------------------------------------------------------------------------------------
def test_quota_over_memory_leaves_the_vmi_pending_with_a_failed_create_event(core, vmis, ns):
    """Compute quota applies to the virt-launcher pod: the VMI is created but stays Pending."""
    core.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "lab"}, "spec": {"hard": {"requests.memory": "512Mi", "requests.cpu": "1"}}}
    )
    vmis.create(ns, small_vmi("fits", memory="128Mi"))
    vmis.running(ns, "fits")
    vmis.create(ns, small_vmi("toobig", memory="1Gi"))

    def refused() -> list:
        events = core.list_namespaced_event(ns, field_selector="involvedObject.name=toobig").items
        return [e for e in events if e.reason == "FailedCreate"]

    event = wait_for(refused)[0]
    assert event.type == "Warning"
    assert "exceeded quota: lab" in event.message
    assert event.involved_object.kind == "VirtualMachineInstance"
    time.sleep(0.1)
    assert vmis.get(ns, "toobig")["status"]["phase"] == "Pending"

    quota = core.read_namespaced_resource_quota("lab", ns)
    assert quota.status.hard == {"requests.memory": "512Mi", "requests.cpu": "1"}
    # 128Mi guest + 288Mi overhead (240Mi fixed, 8Mi per vCPU, 8Mi IOThread, 32Mi video; no page tables
    # without a memory request) + 1M (containerDisk container) + 35M (guest-console-log sidecar).
    assert quota.status.used["requests.memory"] == str((128 + 288) * 2**20 + 36 * 10**6)
    assert quota.status.used["requests.cpu"] == "106m"  # 1 vCPU / cpuAllocationRatio 10, + 1m + 5m

    # Freeing room lets virt-controller's retry create the pod.
    vmis.delete(ns, "fits")
    core.patch_namespaced_resource_quota("lab", ns, {"spec": {"hard": {"requests.memory": "2Gi"}}})
    vmis.running(ns, "toobig")


def test_vmi_count_quota_refuses_the_object_itself(core, vmis, ns):
    """count/virtualmachineinstances.kubevirt.io is an object-count quota: the API server refuses the
    VMI object with 403 (unlike compute quota, which only stops the launcher pod)."""
    core.create_namespaced_resource_quota(
        ns,
        {"metadata": {"name": "count"}, "spec": {"hard": {"count/virtualmachineinstances.kubevirt.io": "1"}}},
    )
    vmis.create(ns, small_vmi("one"))
    with pytest.raises(client.exceptions.ForbiddenException) as err:
        vmis.create(ns, small_vmi("two"))
    assert "exceeded quota: count" in status_of(err.value)["message"]
    used = wait_for(lambda: core.read_namespaced_resource_quota("count", ns).status.used)
    assert used == {"count/virtualmachineinstances.kubevirt.io": "1"}


def test_limits_quota_gives_the_compute_container_automatic_limits(core, vmis, ns):
    """A quota on limits makes virt-controller set limits the VMI lacks (template.go
    doesVMIRequireAutoResourceLimits, renderresources.go WithAutoMemoryLimits: 2 x the request)."""
    core.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "limits"}, "spec": {"hard": {"limits.memory": "4Gi", "limits.cpu": "4"}}}
    )
    vmis.create(ns, small_vmi("nolimits", memory="128Mi"))
    vmis.running(ns, "nolimits")
    used = core.read_namespaced_resource_quota("limits", ns).status.used
    # compute 2 x 416Mi, + 40M (containerDisk) + 60M (guest-console-log); CPU 1 + 10m + 15m.
    assert used == {"limits.memory": str(2 * 416 * 2**20 + 100 * 10**6), "limits.cpu": "1025m"}


# -- watch -----------------------------------------------------------------------------------------
def test_watch_delivers_added_modified_deleted_in_order_and_ends_on_timeout(core, ns):
    start_rv = core.list_namespaced_secret(ns).metadata.resource_version
    core.create_namespaced_secret(ns, {"metadata": {"name": "w"}})
    core.patch_namespaced_secret("w", ns, {"metadata": {"labels": {"x": "y"}}})
    core.delete_namespaced_secret("w", ns)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_secret, ns, resource_version=start_rv, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert 0.9 < time.monotonic() - started < 3


def test_watch_without_resource_version_starts_with_the_current_state(core, ns):
    core.create_namespaced_secret(ns, {"metadata": {"name": "existing"}})
    events = list(watch.Watch().stream(core.list_namespaced_secret, ns, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "existing")]


def test_watch_with_label_selector_sees_objects_enter_and_leave(core, ns):
    start_rv = core.list_namespaced_secret(ns).metadata.resource_version
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", ns, {"metadata": {"labels": {"watched": "yes"}}})
    core.patch_namespaced_secret("s", ns, {"metadata": {"labels": {"watched": "no"}}})
    events = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_secret,
            ns,
            label_selector="watched=yes",
            resource_version=start_rv,
            timeout_seconds=1,
        )
    ]
    assert events == ["ADDED", "DELETED"]


def test_watch_namespaces_sees_termination(core):
    name = f"w-{time.monotonic_ns() % 10**9}"
    rv = core.list_namespace().metadata.resource_version
    core.create_namespace({"metadata": {"name": name}})
    core.delete_namespace(name)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespace, field_selector=f"metadata.name={name}", resource_version=rv, timeout_seconds=3
    ):
        seen.append((event["type"], event["object"].status.phase))
        if event["type"] == "DELETED":
            break
    assert seen[0] == ("ADDED", "Active")
    assert ("MODIFIED", "Terminating") in seen
    assert seen[-1][0] == "DELETED"


# -- discovery -------------------------------------------------------------------------------------
def test_discovery_lists_what_the_server_serves(admin_api):
    assert client.VersionApi(admin_api).get_code().major == "1"
    groups = {g.name: g for g in client.ApisApi(admin_api).get_api_versions().groups}
    assert {"networking.k8s.io", "kubevirt.io", "subresources.kubevirt.io"} <= set(groups)
    assert groups["kubevirt.io"].preferred_version.group_version == "kubevirt.io/v1"
    core_resources = {r.name: r for r in client.CoreV1Api(admin_api).get_api_resources().resources}
    assert core_resources["namespaces"].namespaced is False
    assert core_resources["secrets"].namespaced is True
    assert "watch" in core_resources["namespaces"].verbs
    kubevirt = client.CustomObjectsApi(admin_api).get_api_resources("kubevirt.io", "v1").resources
    vmi = next(r for r in kubevirt if r.name == "virtualmachineinstances")
    assert (vmi.kind, vmi.namespaced, vmi.short_names) == ("VirtualMachineInstance", True, ["vmi", "vmis"])
    subresources = {
        r.name
        for r in client.CustomObjectsApi(admin_api)
        .get_api_resources("subresources.kubevirt.io", "v1")
        .resources
    }
    assert {
        "virtualmachineinstances/vnc",
        "virtualmachineinstances/console",
        "virtualmachineinstances/pause",
    } <= (subresources)
