"""What differs between clusters (the app's account, Pod Security level, DNS) comes from settings,
defaults to today's behaviour, and a wrong value is reported at start, not at a student's first lab."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labs import cluster_profile, lifecycle, manifests
from labs.checks import check_cluster_profile
from labs.exceptions import ClusterUnavailable
from labs.models import LabInstance

REPO = Path(__file__).resolve().parents[2]


def test_the_default_settings_give_todays_behaviour():
    assert cluster_profile.cluster_profile() == manifests.ClusterProfile()
    assert check_cluster_profile(None) == []


def test_openshift_and_node_local_dns_settings(settings):
    settings.LABS_DNS_NAMESPACE = "openshift-dns"
    settings.LABS_DNS_POD_LABELS = ["dns.operator.openshift.io/daemonset-dns=default"]
    settings.LABS_DNS_PORTS = ["5353", "53"]
    settings.LABS_DNS_CIDRS = ["169.254.20.10/32"]
    settings.LABS_POD_SECURITY_ENFORCE = "baseline"
    settings.KUBE_SERVICE_ACCOUNT_NAMESPACE = "labs"
    settings.KUBE_SERVICE_ACCOUNT_NAME = "orchestrator"

    assert check_cluster_profile(None) == []
    assert cluster_profile.cluster_profile() == manifests.ClusterProfile(
        service_account_namespace="labs",
        service_account_name="orchestrator",
        pod_security_enforce="baseline",
        dns=manifests.DnsEgress(
            namespace="openshift-dns",
            pod_labels=(("dns.operator.openshift.io/daemonset-dns", "default"),),
            ports=(5353, 53),
            cidrs=("169.254.20.10/32",),
        ),
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"LABS_POD_SECURITY_ENFORCE": "privilegd"}, "labs.E002"),
        ({"LABS_DNS_NAMESPACE": "Kube_System"}, "labs.E003"),
        ({"LABS_DNS_POD_LABELS": ["k8s-app"]}, "labs.E003"),
        ({"LABS_DNS_POD_LABELS": ["k8s-app=kube dns"]}, "labs.E003"),
        ({"LABS_DNS_NAMESPACE": "", "LABS_DNS_CIDRS": ["10.0.0.10/32"]}, "labs.E003"),
        ({"LABS_DNS_PORTS": ["53", "dns"]}, "labs.E004"),
        ({"LABS_DNS_PORTS": ["70000"]}, "labs.E004"),
        ({"LABS_DNS_PORTS": []}, "labs.E004"),
        ({"LABS_DNS_CIDRS": ["169.254.20.10"]}, "labs.E005"),
        ({"LABS_DNS_CIDRS": ["169.254.20.300/32"]}, "labs.E005"),
        ({"KUBE_SERVICE_ACCOUNT_NAME": ""}, "labs.E006"),
        ({"KUBE_SERVICE_ACCOUNT_NAMESPACE": "Lab Orchestrator"}, "labs.E006"),
    ],
)
def test_each_wrong_value_is_an_error_naming_the_setting(settings, overrides, expected):
    for name, value in overrides.items():
        setattr(settings, name, value)
    errors = check_cluster_profile(None)
    assert [e.id for e in errors] == [expected]
    assert errors[0].hint
    with pytest.raises(cluster_profile.ClusterProfileInvalid):
        cluster_profile.cluster_profile()


def test_no_dns_at_all_is_allowed_with_a_warning(settings):
    settings.LABS_DNS_NAMESPACE = ""
    settings.LABS_DNS_POD_LABELS = []
    messages = check_cluster_profile(None)
    assert [m.id for m in messages] == ["labs.W001"]
    assert cluster_profile.cluster_profile().dns == manifests.DnsEgress(namespace="", pod_labels=())


@pytest.mark.django_db
def test_a_start_with_wrong_settings_is_refused_before_anything_is_recorded(settings, make_lab, student):
    settings.LABS_DNS_PORTS = ["fifty-three"]
    with pytest.raises(ClusterUnavailable, match="LABS_DNS_PORTS"):
        lifecycle.instance_start(user=student, lab=make_lab())
    assert not LabInstance.objects.exists()


def test_manage_py_check_reads_the_environment_and_fails(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY")}
    env.update(
        LABORCHESTRATOR_VAR_DIR=str(tmp_path), LABS_POD_SECURITY_ENFORCE="strict", LABS_DNS_PORTS="53, 5353"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "labs.E002" in result.stderr and "'strict'" in result.stderr
    assert "labs.E004" not in result.stderr  # "53, 5353" is two ports


@pytest.mark.django_db
def test_the_cluster_accepts_the_configured_dns_rule(app_cluster, make_lab, student, settings, local_cluster):
    from kubernetes import client

    settings.LABS_DNS_NAMESPACE = "openshift-dns"
    settings.LABS_DNS_POD_LABELS = ["dns.operator.openshift.io/daemonset-dns=default"]
    settings.LABS_DNS_PORTS = ["5353"]
    settings.LABS_DNS_CIDRS = ["169.254.20.10/32", "fd00::a/128"]
    instance = lifecycle.instance_start(user=student, lab=make_lab())

    policy = client.NetworkingV1Api(local_cluster.api_client("admin")).read_namespaced_network_policy(
        manifests.NETWORK_POLICY_NAME, instance.namespace
    )
    dns = policy.spec.egress[1]
    assert [p.port for p in dns.ports] == [5353, 5353]
    assert dns.to[0].namespace_selector.match_labels == {"kubernetes.io/metadata.name": "openshift-dns"}
    assert [peer.ip_block.cidr for peer in dns.to[1:]] == ["169.254.20.10/32", "fd00::a/128"]
    lifecycle.instance_stop(instance=instance)
