"""Conformance: the virt-launcher pod's size (what a namespace's quota is charged) and how a VMI reports
why it does not start. Through the official client over real HTTPS, against the session's server.

Upstream files (KubeVirt at /work/.mirror/kubevirt+kubevirt; Kubernetes through the search tools):
- pkg/hypervisor/kvm/hypervisorbackend.go GetMemoryOverhead: 240Mi fixed, guest/512 page tables,
  8Mi per vCPU, 8Mi IOThread, 32Mi video, +100Mi when requests equal limits (Guaranteed QoS);
- pkg/virt-controller/services/renderresources.go: CPU request vCPUs/cpuAllocationRatio, support
  containers' requests raised to their limits under Guaranteed QoS;
- pkg/container-disk/container-disk.go: containerDisk containers 1m/1M requested, 10m/40M limits;
- pkg/virt-controller/services/serialconsolelog.go: guest-console-log 5m/35M requested, 15m/60M limits;
- k8s.io/component-helpers/resource/helpers.go: sidecars add up with containers, init containers peak;
- pkg/virt-controller/watch/vmi/lifecycle.go: FailedCreate (condition "failed to create virtual
  machine pod: ...", event "Error creating pod: ..."), PodScheduled=False copied from the pod,
  ErrImagePull/ImagePullBackOff from the containers (checkForContainerImageError);
- pkg/controller/conditions.go CheckFailure: one Synchronized=False condition per reason.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from localcluster.harness import start_local_cluster
from tests.localcluster.lc_helpers import KV, small_vmi, wait_for

Mi = 2**20
M = 10**6


def lab_vmi(name: str, *, memory: str = "128Mi", cores: int = 1, image: str = "quay.io/x/lab:1") -> dict:
    """What Lab Orchestrator creates: memory requested and limited at the guest's size, CPUs by topology
    only (no CPU request or limit, so not Guaranteed), VNC and serial console, containerDisk + cloud-init."""
    vmi = small_vmi(name, memory=memory)
    domain = vmi["spec"]["domain"]
    domain["cpu"] = {"cores": cores}
    domain["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}
    domain["devices"]["autoattachGraphicsDevice"] = True
    domain["devices"]["autoattachSerialConsole"] = True
    vmi["spec"]["volumes"][0]["containerDisk"]["image"] = image
    return vmi


def quota(core: client.CoreV1Api, ns: str, **hard: str) -> None:
    body = {"metadata": {"name": "lab"}, "spec": {"hard": {k.replace("_", "."): v for k, v in hard.items()}}}
    core.create_namespaced_resource_quota(ns, body)


def used(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    return core.read_namespaced_resource_quota("lab", ns).status.used


def condition(vmi: dict, kind: str) -> dict | None:
    return next((c for c in vmi.get("status", {}).get("conditions", []) if c["type"] == kind), None)


GENEROUS = {"requests_memory": "8Gi", "limits_memory": "8Gi", "requests_cpu": "8", "limits_cpu": "8"}


def test_a_burstable_lab_vm_is_charged_guest_overhead_and_support_containers(core, vmis, ns):
    quota(core, ns, **GENEROUS)
    vmis.create(ns, lab_vmi("small"))
    vmis.running(ns, "small")
    overhead = (240 + 8 + 8 + 32) * Mi + 128 * Mi // 512
    assert used(core, ns) == {
        # compute (guest + overhead) + containerDisk 1M + guest-console-log 35M
        "requests.memory": str(128 * Mi + overhead + 36 * M),
        # compute limit = request (the VMI limits memory) + 40M + 60M
        "limits.memory": str(128 * Mi + overhead + 100 * M),
        "requests.cpu": "106m",  # 1 vCPU / 10 + 1m + 5m
        "limits.cpu": "1025m",  # automatic limit of 1 CPU (the quota limits CPU) + 10m + 15m
    }


def test_guaranteed_qos_adds_100mi_and_raises_support_containers_to_their_limits(core, vmis, ns):
    """The case of the issue: a 128Mi one-core VM asking for requests == limits needs about 612Mi."""
    quota(core, ns, **GENEROUS)
    vmi = lab_vmi("guaranteed")
    vmi["spec"]["domain"]["resources"] = {
        "requests": {"memory": "128Mi", "cpu": "1"},
        "limits": {"memory": "128Mi", "cpu": "1"},
    }
    vmis.create(ns, vmi)
    vmis.running(ns, "guaranteed")
    total = 128 * Mi + (240 + 8 + 8 + 32 + 100) * Mi + 128 * Mi // 512 + 40 * M + 60 * M
    assert round(total / Mi, 1) == 611.6
    assert used(core, ns) == {
        "requests.memory": str(total),
        "limits.memory": str(total),
        "requests.cpu": "1025m",
        "limits.cpu": "1025m",
    }


def test_a_cpu_limit_alone_is_also_the_request(vmis, ns):
    """The mutating webhook's setDefaultResourceRequests (pkg/defaults/defaults.go)."""
    vmi = small_vmi("limited")
    vmi["spec"]["domain"]["resources"] = {"limits": {"cpu": "2"}}
    created = vmis.create(ns, vmi)
    assert created["spec"]["domain"]["resources"]["requests"] == {"cpu": "2"}


def test_a_quota_too_small_leaves_the_vmi_pending_with_failed_create(core, vmis, ns):
    quota(core, ns, requests_memory="425Mi", limits_memory="425Mi", requests_cpu="2", limits_cpu="2")
    vmis.create(ns, lab_vmi("refused"))

    def refused() -> dict | None:
        vmi = vmis.get(ns, "refused")
        return vmi if condition(vmi, "Synchronized") else None

    vmi = wait_for(refused)
    assert vmi["status"]["phase"] == "Pending"
    synchronized = condition(vmi, "Synchronized")
    assert synchronized["status"] == "False"
    assert synchronized["reason"] == "FailedCreate"
    assert synchronized["message"].startswith(
        'failed to create virtual machine pod: pods "virt-launcher-refused-'
    )
    assert "is forbidden: exceeded quota: lab, requested: limits.memory=" in synchronized["message"]
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=refused").items
    failed = [e for e in events if e.reason == "FailedCreate"]
    assert failed and failed[0].message.startswith('Error creating pod: pods "virt-launcher-refused-')
    assert failed[0].type == "Warning"
    # Room appears (the quota is raised): virt-controller's retry creates the pod.
    core.patch_namespaced_resource_quota("lab", ns, {"spec": {"hard": GENEROUS_HARD}})
    running = vmis.running(ns, "refused")
    assert condition(running, "Synchronized") is None


GENEROUS_HARD = {k.replace("_", "."): v for k, v in GENEROUS.items()}


def test_an_image_the_registry_lacks_is_err_image_pull_then_back_off(local_cluster, vmis, ns):
    local_cluster.faults.missing_image("quay.io/x/missing:1")
    vmis.create(ns, lab_vmi("nopull", image="quay.io/x/missing:1"))

    def reason() -> str:
        synchronized = condition(vmis.get(ns, "nopull"), "Synchronized")
        return synchronized["reason"] if synchronized else ""

    wait_for(lambda: reason() == "ErrImagePull")
    vmi = vmis.get(ns, "nopull")
    assert vmi["status"]["phase"] == "Scheduling"  # the pod exists and was scheduled
    assert condition(vmi, "Synchronized")["message"] == (
        'rpc error: code = NotFound desc = failed to pull and unpack image "quay.io/x/missing:1": '
        'failed to resolve reference "quay.io/x/missing:1": quay.io/x/missing:1: not found'
    )
    wait_for(lambda: reason() == "ImagePullBackOff", timeout=10)
    back_off = condition(vmis.get(ns, "nopull"), "Synchronized")["message"]
    assert back_off == 'Back-off pulling image "quay.io/x/missing:1"'
    # The image is pushed: the kubelet's next attempt pulls it and the VMI starts.
    local_cluster.faults.clear()
    assert condition(vmis.running(ns, "nopull"), "Synchronized") is None


def test_a_pod_larger_than_the_node_is_unschedulable(local_cluster, vmis, ns):
    local_cluster.faults.node(memory="1Gi")
    vmis.create(ns, lab_vmi("fits", memory="256Mi"))
    vmis.running(ns, "fits")
    vmis.create(ns, lab_vmi("huge", memory="2Gi"))

    def unschedulable() -> dict | None:
        vmi = vmis.get(ns, "huge")
        return vmi if condition(vmi, "PodScheduled") else None

    vmi = wait_for(unschedulable)
    assert vmi["status"]["phase"] == "Scheduling"
    scheduled = condition(vmi, "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"] == (
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )
    # A bigger node: the scheduler places the pod.
    local_cluster.faults.node(memory="64Gi")
    assert condition(vmis.running(ns, "huge"), "PodScheduled") is None


@pytest.fixture(scope="module")
def configured_cluster(tmp_path_factory):
    """A cluster whose KubeVirt CR configures the sizes, and a none runtime with an image list."""
    state = tmp_path_factory.mktemp("configured")
    (state / "kubevirt.yaml").write_text(
        json.dumps(
            {
                "additionalGuestMemoryOverheadRatio": "1.5",
                "developerConfiguration": {"cpuAllocationRatio": 5},
                "supportContainerResources": [
                    {"type": "guest-console-log", "resources": {"requests": {"memory": "50M"}}},
                    {"type": "container-disk", "resources": {"limits": {"memory": "80M"}}},
                ],
            }
        )
    )
    (state / "images.txt").write_text("# what the registry has\nquay.io/x/lab:1\nbusybox\n")
    args = ("--phase-delay-ms", "5", "--kubevirt-config", str(state / "kubevirt.yaml"))
    args += ("--image-list", str(state / "images.txt"))
    with start_local_cluster(state / "server", extra_args=args) as cluster:
        yield cluster


def test_the_kubevirt_configuration_changes_the_launcher_pod(configured_cluster):
    api = configured_cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": "sized"}})
    quota(core, "sized", **GENEROUS)
    custom.create_namespaced_custom_object(*KV, "sized", "virtualmachineinstances", lab_vmi("vm", cores=2))

    def phase() -> str:
        vmi = custom.get_namespaced_custom_object(*KV, "sized", "virtualmachineinstances", "vm")
        return vmi.get("status", {}).get("phase", "")

    wait_for(lambda: phase() == "Running")
    overhead = (240 + 2 * 8 + 8 + 32) * Mi + 128 * Mi // 512
    # MultiplyMemory: the overhead in whole kB (rounded up) times (ratio - 1), truncated, in kB.
    overhead += int(-(-overhead // 1000) * 0.5) * 1000
    assert used(core, "sized") == {
        "requests.memory": str(128 * Mi + overhead + 1 * M + 50 * M),
        "limits.memory": str(128 * Mi + overhead + 80 * M + 60 * M),
        "requests.cpu": "406m",  # 2 vCPUs / 5 + 1m + 5m
        "limits.cpu": "2025m",
    }


def test_the_none_runtime_pulls_only_listed_images(configured_cluster):
    api = configured_cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": "listed"}})
    for name, image in (("listed", "docker.io/library/busybox:latest"), ("unlisted", "quay.io/x/other:2")):
        custom.create_namespaced_custom_object(
            *KV, "listed", "virtualmachineinstances", lab_vmi(name, image=image)
        )

    def get(name: str) -> dict:
        return custom.get_namespaced_custom_object(*KV, "listed", "virtualmachineinstances", name)

    wait_for(lambda: get("listed").get("status", {}).get("phase") == "Running")
    wait_for(lambda: (condition(get("unlisted"), "Synchronized") or {}).get("reason") == "ErrImagePull")
    assert "quay.io/x/other:2: not found" in condition(get("unlisted"), "Synchronized")["message"]
