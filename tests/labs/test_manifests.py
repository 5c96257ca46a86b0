"""Cluster objects of an instance, as plain data: no cluster, no database."""

import base64
import json

import pytest
import yaml

from labs import manifests
from labs.launcher_sizing import KubeVirtSizing
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


KUBEVIRT_DEFAULTS = KubeVirtSizing()
# Today's behaviour: the defaults the settings have too (tests/labs/test_cluster_profile.py).
DEFAULT_PROFILE = manifests.ClusterProfile()


def build(machines=(WEB, ROUTER), sizing=KUBEVIRT_DEFAULTS, profile=DEFAULT_PROFILE):
    return manifests.make_instance_manifests(
        installation_id="3f9c2a7d1e04",
        namespace="net101-42",
        instance_id=42,
        lab_slug="net-101",
        owner_id=7,
        machines=list(machines),
        sizing=sizing,
        profile=profile,
    )


def test_namespace_carries_the_labels_reconcile_and_selectors_rely_on():
    namespace = build().namespace
    assert namespace["metadata"] == {
        "name": "net101-42",
        "labels": {
            "app.kubernetes.io/managed-by": "laborchestrator",
            "laborchestrator/installation": "3f9c2a7d1e04",
            "laborchestrator/instance": "42",
            "laborchestrator/lab": "net-101",
            "laborchestrator/owner": "7",
            # KubeVirt's launcher pods need it where the cluster's default level is stricter.
            "pod-security.kubernetes.io/enforce": "privileged",
        },
    }


def test_the_pod_security_level_follows_the_profile_or_is_left_out():
    baseline = build(profile=manifests.ClusterProfile(pod_security_enforce="baseline")).namespace
    assert baseline["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    unset = build(profile=manifests.ClusterProfile(pod_security_enforce="")).namespace
    assert "pod-security.kubernetes.io/enforce" not in unset["metadata"]["labels"]


def test_the_role_binding_gives_the_apps_own_account_the_lab_role_in_this_namespace_only():
    profile = manifests.ClusterProfile(service_account_namespace="labs", service_account_name="orchestrator")
    objects = build(profile=profile)
    binding = objects.role_binding
    assert binding["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"]["namespace"] == "net101-42"
    assert binding["metadata"]["labels"]["laborchestrator/instance"] == "42"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "laborchestrator-lab",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orchestrator", "namespace": "labs"}]


def test_every_object_carries_the_installation_and_instance_labels():
    built = build()
    objects = [
        built.namespace,
        built.role_binding,
        built.network_policy,
        built.resource_quota,
        *built.secrets,
        *built.vmis,
    ]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert manifests.belongs_to(labels, installation_id="3f9c2a7d1e04", instance_id=42), obj["kind"]
        assert not manifests.belongs_to(labels, installation_id="another", instance_id=42)
        assert not manifests.belongs_to(labels, installation_id="3f9c2a7d1e04", instance_id=4)


def test_selectors_pick_one_installation_or_the_unlabelled_ones():
    assert manifests.installation_selector("3f9c2a7d1e04") == (
        "app.kubernetes.io/managed-by=laborchestrator,laborchestrator/installation=3f9c2a7d1e04"
    )
    assert manifests.UNLABELLED_SELECTOR == (
        "app.kubernetes.io/managed-by=laborchestrator,!laborchestrator/installation"
    )


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


def dns_rule(dns: manifests.DnsEgress) -> list[dict]:
    egress = build(profile=manifests.ClusterProfile(dns=dns)).network_policy["spec"]["egress"]
    assert egress[0] == {"to": [{"podSelector": {}}]}
    return egress[1:]


def test_the_dns_rule_for_openshift():
    rule = dns_rule(
        manifests.DnsEgress(
            namespace="openshift-dns",
            pod_labels=(("dns.operator.openshift.io/daemonset-dns", "default"),),
            ports=(5353,),
        )
    )
    assert rule == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}},
                    "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 5353}, {"protocol": "TCP", "port": 5353}],
        }
    ]


def test_the_dns_rule_for_node_local_dns_cache_keeps_kube_dns_as_a_fallback():
    rule = dns_rule(manifests.DnsEgress(cidrs=("169.254.20.10/32",)))
    assert rule[0]["to"][1] == {"ipBlock": {"cidr": "169.254.20.10/32"}}
    assert rule[0]["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_without_a_dns_namespace_or_address_the_lab_may_not_leave_its_namespace():
    assert dns_rule(manifests.DnsEgress(namespace="", pod_labels=(), cidrs=())) == []


def test_quota_covers_each_machines_launcher_pod_but_no_more_vmis():
    hard = build().resource_quota["spec"]["hard"]
    # web (2 cores, 1024Mi, VNC, no serial console): compute = 1024Mi + 240Mi fixed + 2Mi page tables
    # + 16Mi (2 vCPUs) + 8Mi IOThread + 32Mi video = 1322Mi; + containerDisk 1M requested / 40M limit;
    # CPU 2/10 + 1m requested, 2 + 10m limit.
    # router (1 core, 256Mi, serial console): compute = 256Mi + 240Mi + 524289 B page tables + 8Mi
    # + 8Mi; + containerDisk 1M/40M + guest-console-log 35M/60M; CPU 100m + 1m + 5m, 1 + 10m + 15m.
    web, router = 1322 * 2**20, 512 * 2**20 + 524289
    assert hard == {
        "requests.cpu": f"{201 + 106}m",
        "limits.cpu": f"{2010 + 1025}m",
        "requests.memory": "1870Mi",  # (web + 1M + router + 36M) in MiB, rounded up
        "limits.memory": "1969Mi",  # (web + 40M + router + 100M)
        "count/virtualmachineinstances.kubevirt.io": "2",
    }
    assert -(-(web + router + 37 * 10**6) // 2**20) == 1870
    assert -(-(web + router + 140 * 10**6) // 2**20) == 1969


def test_quota_follows_the_clusters_kubevirt_configuration():
    sizing = KubeVirtSizing.parse(
        cpu_allocation_ratio="4",
        memory_overhead_ratio="2",
        support_container_resources=[
            {"type": "guest-console-log", "resources": {"limits": {"memory": "100Mi", "cpu": "50m"}}}
        ],
    )
    hard = build(machines=(ROUTER,), sizing=sizing).resource_quota["spec"]["hard"]
    # router's overhead doubled (in whole kB), CPU request 1000m/4, the console log's limits raised.
    overhead = 256 * 2**20 + 524289
    overhead += -(-overhead // 1000) * 1000
    assert hard["requests.cpu"] == f"{250 + 1 + 5}m"
    assert hard["limits.cpu"] == f"{1000 + 10 + 50}m"
    assert hard["requests.memory"] == f"{-(-(256 * 2**20 + overhead + 36 * 10**6) // 2**20)}Mi"
    assert hard["limits.memory"] == f"{-(-(256 * 2**20 + overhead + 40 * 10**6 + 100 * 2**20) // 2**20)}Mi"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"cpu_allocation_ratio": "ten"}, "not a whole number"),
        ({"cpu_allocation_ratio": "0"}, "at least 1"),
        ({"memory_overhead_ratio": "0.5"}, "at least 1.0"),
        ({"memory_overhead_ratio": "lots"}, "at least 1.0"),
        ({"support_container_resources": {"type": "container-disk"}}, "must be a list"),
        ({"support_container_resources": [{"type": "hotplug"}]}, "needs a type among"),
        (
            {
                "support_container_resources": [
                    {"type": "container-disk", "resources": {"limits": {"gpu": 1}}}
                ]
            },
            "only cpu and memory",
        ),
        (
            {
                "support_container_resources": [
                    {"type": "container-disk", "resources": {"limits": {"memory": "lots"}}}
                ]
            },
            "not a quantity",
        ),
    ],
)
def test_kubevirt_sizing_settings_are_checked(settings, error):
    arguments = {"cpu_allocation_ratio": "10", "memory_overhead_ratio": "", "support_container_resources": []}
    with pytest.raises(ValueError, match=error):
        KubeVirtSizing.parse(**{**arguments, **settings})


def test_vmi_is_built_from_the_machine_not_hard_coded():
    web = build().vmis[0]
    assert web["apiVersion"] == "kubevirt.io/v1"
    assert web["metadata"]["name"] == "web"
    assert web["metadata"]["labels"]["laborchestrator/machine"] == "web"
    assert web["metadata"]["labels"]["laborchestrator/instance"] == "42"
    domain = web["spec"]["domain"]
    assert domain["cpu"] == {"cores": 2}
    assert domain["memory"] == {"guest": "1024Mi"}
    # Memory requested and limited at the guest's size, CPU by topology only: Burstable, not Guaranteed.
    assert domain["resources"] == {"requests": {"memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}
    # Bridge binding: the guest itself holds the pod IP that status reports (README, "Lab networks").
    assert domain["devices"]["interfaces"] == [{"name": "default", "bridge": {}}]
    assert web["spec"]["networks"] == [{"name": "default", "pod": {}}]
    assert web["spec"]["volumes"][0] == {
        "name": "rootdisk",
        "containerDisk": {"image": "quay.io/containerdisks/debian:12"},
    }
    assert web["spec"]["volumes"][1] == {
        "name": "cloudinit",
        "cloudInitNoCloud": {"secretRef": {"name": "web-cloudinit"}},
    }


def test_machines_are_named_by_the_instance_headless_service():
    """`ping router` from web: hostname + subdomain + a headless Service of that name (KubeVirt's
    DHCP puts `<subdomain>.<namespace>.svc.cluster.local` first in the guest's search path)."""
    objects = build()
    service = objects.service
    assert service["apiVersion"] == "v1" and service["kind"] == "Service"
    assert service["metadata"]["name"] == manifests.MACHINES_SERVICE_NAME
    assert service["metadata"]["namespace"] == "net101-42"
    assert service["metadata"]["labels"]["laborchestrator/instance"] == "42"
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {"app.kubernetes.io/managed-by": "laborchestrator", "laborchestrator/instance": "42"},
        # A machine keeps its name while it boots and while it is paused.
        "publishNotReadyAddresses": True,
    }
    for vmi, machine in zip(objects.vmis, (WEB, ROUTER), strict=True):
        assert vmi["spec"]["hostname"] == machine.name
        assert vmi["spec"]["subdomain"] == manifests.MACHINES_SERVICE_NAME
        assert service["spec"]["selector"].items() <= vmi["metadata"]["labels"].items()


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


def test_a_machine_with_a_screen_gets_a_usb_tablet_for_the_browsers_pointer():
    """KubeVirt's default bus for inputs, which every guest OS drives without extra drivers; without a
    tablet the guest's PS/2 mouse moves relatively and its pointer drifts from the browser's."""
    web, router = build().vmis
    assert web["spec"]["domain"]["devices"]["inputs"] == [{"name": "tablet", "type": "tablet", "bus": "usb"}]
    assert "inputs" not in router["spec"]["domain"]["devices"]


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
