"""Starting a lab: what a student gets in the cluster, and what the status says about it."""

import base64
import json

import pytest
from kubernetes import client

from labs import lifecycle
from labs.exceptions import LabMisconfigured, LabNotAvailable
from labs.models import LabInstance
from tests.labs.conftest import wait_until_running

pytestmark = pytest.mark.django_db
Status = LabInstance.Status


def test_one_machine_lab_starts_and_runs(app_cluster, admin_core, admin_vmis, make_lab, student):
    lab = make_lab(machines=1)

    instance = lifecycle.instance_start(user=student, lab=lab)

    assert instance.status == Status.STARTING
    assert instance.namespace == f"{lab.namespace_prefix}-{instance.pk}"
    assert instance.started_at is not None
    assert (instance.expires_at - instance.started_at).total_seconds() == lab.lifetime_minutes * 60
    labels = admin_core.read_namespace(instance.namespace).metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "laborchestrator"
    assert labels["laborchestrator/instance"] == str(instance.pk)
    assert labels["laborchestrator/lab"] == lab.slug
    assert labels["laborchestrator/owner"] == str(student.pk)

    status = wait_until_running(instance)
    assert [m.name for m in status.machines] == ["vm0"]
    machine = status.machines[0]
    assert machine.phase == "Running"
    assert machine.ip_address
    assert not machine.paused
    assert LabInstance.objects.get(pk=instance.pk).status == Status.RUNNING


def test_multi_machine_lab_gets_every_machine_isolated_and_limited(
    app_cluster, admin_core, admin_vmis, make_lab, student, local_cluster
):
    lab = make_lab(machines=3)
    instance = lifecycle.instance_start(user=student, lab=lab)

    status = wait_until_running(instance)
    assert {m.name for m in status.machines} == {"vm0", "vm1", "vm2"}
    assert len({m.ip_address for m in status.machines}) == 3
    networking = client.NetworkingV1Api(local_cluster.api_client("admin"))
    policies = networking.list_namespaced_network_policy(instance.namespace).items
    assert [p.spec.policy_types for p in policies] == [["Ingress", "Egress"]]
    (quota,) = admin_core.list_namespaced_resource_quota(instance.namespace).items
    assert quota.spec.hard["count/virtualmachineinstances.kubevirt.io"] == "3"


def test_password_is_in_the_secret_for_the_owner_and_never_in_the_vmi(
    app_cluster, admin_core, admin_vmis, make_lab, student
):
    lab = make_lab(machines=2)
    instance = lifecycle.instance_start(user=student, lab=lab)

    machines = list(instance.machines.all())
    passwords = {m.password for m in machines}
    assert len(passwords) == 2 and all(len(p) >= 16 for p in passwords)
    for vmi in admin_vmis(instance.namespace):
        assert not any(password in json.dumps(vmi) for password in passwords)
        # The VMI the cluster stored still points at the Secret (a misspelt field would be dropped).
        cloud_init = next(v for v in vmi["spec"]["volumes"] if "cloudInitNoCloud" in v)["cloudInitNoCloud"]
        assert cloud_init == {"secretRef": {"name": f"{vmi['metadata']['name']}-cloudinit"}}
    for machine in machines:
        secret = admin_core.read_namespaced_secret(f"{machine.name}-cloudinit", instance.namespace)
        assert machine.password in base64.b64decode(secret.data["userdata"]).decode()
        assert machine.username == "cirros"


def test_status_is_one_list_call_whatever_the_number_of_machines(app_cluster, make_lab, student):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=4))
    wait_until_running(instance)

    app_cluster.faults.reset_calls()
    lifecycle.instance_refresh(instance=instance)

    calls = [c for c in app_cluster.faults.calls() if c["resource"] == "virtualmachineinstances"]
    assert [c["verb"] for c in calls] == ["list"]


def test_start_creates_each_object_once(app_cluster, make_lab, student):
    app_cluster.faults.reset_calls()
    lifecycle.instance_start(user=student, lab=make_lab(machines=2))

    creates = sorted(c["resource"] for c in app_cluster.faults.calls() if c["verb"] == "create")
    assert creates == [
        "namespaces",
        "networkpolicies",
        "resourcequotas",
        "rolebindings",
        "secrets",
        "secrets",
        "services",
        "virtualmachineinstances",
        "virtualmachineinstances",
    ]


def test_the_instance_headless_service_selects_exactly_its_machines(
    app_cluster, make_lab, student, admin_core, admin_vmis
):
    """The Service that names the machines in cluster DNS (`ping beta`) covers this instance only."""
    lab = make_lab(machines=2)
    first = lifecycle.instance_start(user=student, lab=lab)
    second = lifecycle.instance_start(user=student, lab=make_lab(machines=1))

    service = admin_core.read_namespaced_service("lab", first.namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True
    selector = service.spec.selector
    selected = [
        vmi for vmi in admin_vmis(first.namespace) if selector.items() <= vmi["metadata"]["labels"].items()
    ]
    assert {vmi["metadata"]["name"] for vmi in selected} == {m.name for m in first.machines.all()}
    for vmi in admin_vmis(first.namespace):
        assert vmi["spec"]["subdomain"] == "lab"
        assert vmi["spec"]["hostname"] == vmi["metadata"]["name"]
    other = admin_vmis(second.namespace)
    assert other and not any(selector.items() <= vmi["metadata"]["labels"].items() for vmi in other)


def test_students_cannot_start_unpublished_labs_but_instructors_can(
    app_cluster, make_lab, student, instructor
):
    lab = make_lab(published=False)

    with pytest.raises(LabNotAvailable, match="not published"):
        lifecycle.instance_start(user=student, lab=lab)
    assert not LabInstance.objects.exists()

    assert lifecycle.instance_start(user=instructor, lab=lab).status == Status.STARTING


def test_a_lab_without_machines_cannot_start(app_cluster, make_lab, student):
    with pytest.raises(LabNotAvailable, match="no machines"):
        lifecycle.instance_start(user=student, lab=make_lab(machines=0))


def test_broken_user_data_is_refused_before_anything_is_created(app_cluster, make_lab, student):
    lab = make_lab()
    lab.machines.update(cloud_init_user_data="- not\n- a mapping\n")
    app_cluster.faults.reset_calls()

    with pytest.raises(LabMisconfigured, match="vm0"):
        lifecycle.instance_start(user=student, lab=lab)

    assert not LabInstance.objects.exists()
    assert app_cluster.faults.calls() == []


def _vmi(name, phase, *, paused=False, ip="10.0.0.5"):
    conditions = [{"type": "Ready", "status": "True"}]
    if paused:
        conditions.append({"type": "Paused", "status": "True"})
    return {
        "metadata": {"name": name},
        "status": {"phase": phase, "conditions": conditions, "interfaces": [{"ipAddress": ip}]},
    }


def test_a_failed_machine_fails_the_instance(app_cluster, make_lab, student, monkeypatch):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    monkeypatch.setattr(
        lifecycle.cluster, "list_vmis", lambda **kwargs: [_vmi("vm0", "Running"), _vmi("vm1", "Failed")]
    )

    status = lifecycle.instance_refresh(instance=instance)

    assert status.status == Status.FAILED
    assert "vm1" in status.last_error
    assert LabInstance.objects.get(pk=instance.pk).status == Status.FAILED


def test_starting_stays_starting_until_every_machine_runs(app_cluster, make_lab, student, monkeypatch):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    monkeypatch.setattr(
        lifecycle.cluster, "list_vmis", lambda **kwargs: [_vmi("vm0", "Running"), _vmi("vm1", "Scheduled")]
    )

    status = lifecycle.instance_refresh(instance=instance)

    assert status.status == Status.STARTING
    assert [m.phase for m in status.machines] == ["Running", "Scheduled"]
