"""Cluster objects of an instance, as plain data: no cluster, no database."""

import base64
import json

import pytest
import yaml

from labs import manifests
from labs.manifests import MachineSpec

WEB = MachineSpec(
    name="web",
    image_reference="quay.io/containerdisks/debian:12",
    cores=2,
    memory_mib=1024,
    username="debian",
    password="s3cret-Pa55word",
    has_vnc=True,
    has_serial_console=False,
    extra_user_data="#cloud-config\npackages: [nginx]\nchpasswd: {users: []}\n",
)
ROUTER = MachineSpec(
    name="router",
    image_reference="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
    cores=1,
    memory_mib=256,
    username="cirros",
    password="another-Pa55word",
    has_vnc=False,
    has_serial_console=True,
)


def build(machines=(WEB, ROUTER)):
    return manifests.make_instance_manifests(
        namespace="net101-42", instance_id=42, lab_slug="net-101", owner_id=7, machines=list(machines)
    )


def test_namespace_carries_the_labels_reconcile_and_selectors_rely_on():
    namespace = build().namespace
    assert namespace["metadata"] == {
        "name": "net101-42",
        "labels": {
            "app.kubernetes.io/managed-by": "laborchestrator",
            "laborchestrator/instance": "42",
            "laborchestrator/lab": "net-101",
            "laborchestrator/owner": "7",
        },
    }


def test_network_policy_keeps_traffic_inside_the_namespace_plus_dns():
    policy = build().network_policy
    assert policy["metadata"]["namespace"] == "net101-42"
    assert policy["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
        "egress": [
            {"to": [{"podSelector": {}}]},
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
        ],
    }


def test_quota_covers_the_machines_and_their_pod_overhead_but_no_more_vmis():
    hard = build().resource_quota["spec"]["hard"]
    # web: 2 cores + 100m, 1024 MiB + 256 + 2 (page tables) + 16 (2 vCPU) + 32 (video)
    # router: 1 core + 100m, 256 MiB + 256 + 1 + 8
    assert hard == {
        "requests.cpu": "3200m",
        "limits.cpu": "3200m",
        "requests.memory": f"{1024 + 306 + 256 + 265}Mi",
        "limits.memory": f"{1024 + 306 + 256 + 265}Mi",
        "count/virtualmachineinstances.kubevirt.io": "2",
    }


def test_vmi_is_built_from_the_machine_not_hard_coded():
    web = build().vmis[0]
    assert web["apiVersion"] == "kubevirt.io/v1"
    assert web["metadata"]["name"] == "web"
    assert web["metadata"]["labels"]["laborchestrator/machine"] == "web"
    assert web["metadata"]["labels"]["laborchestrator/instance"] == "42"
    domain = web["spec"]["domain"]
    assert domain["cpu"] == {"cores": 2}
    assert domain["memory"] == {"guest": "1024Mi"}
    assert domain["resources"]["requests"] == {"cpu": "2", "memory": "1024Mi"}
    assert domain["devices"]["interfaces"] == [{"name": "default", "masquerade": {}}]
    assert web["spec"]["networks"] == [{"name": "default", "pod": {}}]
    assert web["spec"]["volumes"][0] == {
        "name": "rootdisk",
        "containerDisk": {"image": "quay.io/containerdisks/debian:12"},
    }
    assert web["spec"]["volumes"][1] == {
        "name": "cloudinit",
        "cloudInitNoCloud": {"secretRef": {"name": "web-cloudinit"}},
    }


def test_every_disk_and_interface_has_its_volume_and_network():
    for vmi in build().vmis:
        spec = vmi["spec"]
        volumes = {v["name"] for v in spec["volumes"]}
        networks = {n["name"] for n in spec["networks"]}
        assert {d["name"] for d in spec["domain"]["devices"]["disks"]} == volumes
        assert {i["name"] for i in spec["domain"]["devices"]["interfaces"]} <= networks


def test_consoles_follow_the_image():
    web, router = build().vmis
    assert web["spec"]["domain"]["devices"]["autoattachGraphicsDevice"] is True
    assert web["spec"]["domain"]["devices"]["autoattachSerialConsole"] is False
    assert router["spec"]["domain"]["devices"]["autoattachGraphicsDevice"] is False
    assert router["spec"]["domain"]["devices"]["autoattachSerialConsole"] is True


def test_the_password_is_never_in_a_vmi():
    objects = build()
    for vmi, machine in zip(objects.vmis, (WEB, ROUTER), strict=True):
        text = json.dumps(vmi)
        assert machine.password not in text
        assert base64.b64encode(machine.password.encode()).decode() not in text


def test_secret_holds_cloud_config_setting_the_password_and_the_extra_data():
    secret = build().secrets[0]
    assert secret["metadata"]["name"] == "web-cloudinit"
    assert secret["metadata"]["namespace"] == "net101-42"
    userdata = base64.b64decode(secret["data"]["userdata"]).decode()
    assert userdata.startswith("#cloud-config\n")
    config = yaml.safe_load(userdata)
    assert config["password"] == "s3cret-Pa55word"
    assert config["chpasswd"] == {"users": [], "expire": False}
    assert config["ssh_pwauth"] is True
    assert config["packages"] == ["nginx"]


def test_extra_user_data_cannot_override_the_login():
    userdata = manifests.cloud_init_user_data(
        password="generated", extra_user_data="password: mine\nssh_pwauth: false\n"
    )
    config = yaml.safe_load(userdata)
    assert config["password"] == "generated"
    assert config["ssh_pwauth"] is True


def test_passwords_that_look_like_yaml_values_stay_strings():
    config = yaml.safe_load(manifests.cloud_init_user_data(password="yes"))
    assert config["password"] == "yes"


@pytest.mark.parametrize("extra", ["- a list\n", "just text"])
def test_user_data_that_is_not_a_mapping_is_refused(extra):
    with pytest.raises(ValueError, match="mapping"):
        manifests.cloud_init_user_data(password="x", extra_user_data=extra)


def test_label_values_from_free_text_are_valid():
    assert manifests.label_value("_net-101_") == "net-101"
    assert len(manifests.label_value("a" * 80)) == 63


def test_instance_selector_matches_the_labels():
    selector = manifests.instance_selector(42)
    labels = build().vmis[0]["metadata"]["labels"]
    for clause in selector.split(","):
        key, value = clause.split("=")
        assert labels[key] == value
