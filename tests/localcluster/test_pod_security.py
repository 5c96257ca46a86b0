"""Conformance: Pod Security admission and KubeVirt's launcher pods. Where a namespace enforces a
level below `privileged` (its `pod-security.kubernetes.io/enforce` label, or the cluster's default),
virt-controller's pod create is refused and the VMI waits in Pending with `Synchronized=False`,
"failed to create pod for vmi <ns>/<name>, it needs a privileged namespace to run: ... violates
PodSecurity ..." and a FailedCreate event (pkg/virt-controller/watch/vmi/lifecycle.go); it starts
once the namespace is labelled privileged (virt-controller retries).

A cluster of its own, whose default level is `baseline` (`--pod-security-default baseline`), as on
clusters that enforce a Pod Security Standard everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from localcluster.harness import LocalCluster, start_local_cluster
from localcluster.pytest_plugin import FIXTURE_ARGS
from tests.localcluster.lc_helpers import Vmis, small_vmi, wait_for

ENFORCE = "pod-security.kubernetes.io/enforce"


@pytest.fixture(scope="module")
def baseline_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_local_cluster(
        tmp_path_factory.mktemp("baseline"),
        runtime="none",
        extra_args=(*FIXTURE_ARGS, "--pod-security-default", "baseline"),
    ) as cluster:
        yield cluster


@pytest.fixture
def admin(baseline_cluster) -> client.ApiClient:
    return baseline_cluster.api_client("admin")


def namespace(admin: client.ApiClient, labels: dict[str, str]) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def synchronized(vmi: dict) -> dict | None:
    return next((c for c in vmi.get("status", {}).get("conditions", []) if c["type"] == "Synchronized"), None)


@pytest.mark.parametrize("level", [None, "baseline", "restricted"])
def test_below_privileged_the_vmi_waits_saying_it_needs_a_privileged_namespace(admin, level):
    ns = namespace(admin, {ENFORCE: level} if level else {})
    vmis = Vmis(client.CustomObjectsApi(admin))
    vmis.create(ns, small_vmi("vm"))

    condition = wait_for(lambda: synchronized(vmis.get(ns, "vm")), timeout=10)
    enforced = level or "baseline"
    assert condition["status"] == "False" and condition["reason"] == "FailedCreate"
    assert condition["message"].startswith(
        f"failed to create pod for vmi {ns}/vm, it needs a privileged namespace to run: "
        'pods "virt-launcher-vm-'
    )
    assert f'is forbidden: violates PodSecurity "{enforced}:latest": ' in condition["message"]
    assert vmis.get(ns, "vm")["status"]["phase"] == "Pending"
    events = client.CoreV1Api(admin).list_namespaced_event(ns).items
    assert [(e.type, e.reason) for e in events] == [("Warning", "FailedCreate")]
    assert events[0].message == f"failed to render launch manifest: {condition['message']}"


def test_a_privileged_namespace_runs_the_vmi(admin):
    ns = namespace(admin, {ENFORCE: "privileged"})
    vmis = Vmis(client.CustomObjectsApi(admin))
    vmis.create(ns, small_vmi("vm"))
    assert vmis.running(ns, "vm")["status"]["phase"] == "Running"


def test_labelling_the_namespace_privileged_lets_the_waiting_vmi_start(admin):
    ns = namespace(admin, {})
    vmis = Vmis(client.CustomObjectsApi(admin))
    vmis.create(ns, small_vmi("vm"))
    wait_for(lambda: synchronized(vmis.get(ns, "vm")), timeout=10)

    client.CoreV1Api(admin).patch_namespace(ns, {"metadata": {"labels": {ENFORCE: "privileged"}}})

    assert vmis.running(ns, "vm")["status"]["phase"] == "Running"


def test_the_session_cluster_enforces_privileged_by_default_as_kubernetes_does(vmis, ns):
    vmis.create(ns, small_vmi("vm"))
    assert vmis.running(ns, "vm")["status"]["phase"] == "Running"
