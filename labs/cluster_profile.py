"""What the settings say about the cluster: its profile (`labs.manifests.ClusterProfile`) and its
KubeVirt sizing (`labs.launcher_sizing.KubeVirtSizing`), and what is wrong with them.

Settings hold the environment's text as given; this module turns it into the values the manifest
functions take, once per call, and says which setting is wrong for the system check (labs/checks.py).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from django.conf import settings

from labs.launcher_sizing import KubeVirtSizing
from labs.manifests import POD_SECURITY_LEVELS, ClusterProfile, DnsEgress

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class SettingProblem:
    check_id: str
    setting: str
    message: str
    hint: str


class ClusterProfileInvalid(ValueError):
    """The settings do not make a usable profile; `problems` says which and why."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _label_pair(text: str) -> tuple[str, str] | None:
    key, separator, value = text.partition("=")
    prefix, _, name = key.rpartition("/")
    valid = (
        bool(separator)
        and (not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None))
        and len(name) <= 63
        and _LABEL_NAME.match(name) is not None
        and len(value) <= 63
        and _LABEL_VALUE.match(value) is not None
    )
    return (key, value) if valid else None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= 65535 else None


def _cidr(text: str) -> str | None:
    if "/" not in text:
        return None
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return text


def _dns_problems() -> list[SettingProblem]:
    problems = []
    namespace = settings.LABS_DNS_NAMESPACE
    if namespace and not _DNS_LABEL.match(namespace):
        problems.append(
            SettingProblem(
                "labs.E003",
                "LABS_DNS_NAMESPACE",
                f"LABS_DNS_NAMESPACE is {namespace!r}, which is not a namespace name.",
                "Name the namespace the cluster's DNS pods run in, e.g. kube-system or openshift-dns.",
            )
        )
    bad_labels = [text for text in settings.LABS_DNS_POD_LABELS if _label_pair(text) is None]
    if bad_labels or (settings.LABS_DNS_POD_LABELS and not namespace):
        problems.append(
            SettingProblem(
                "labs.E003",
                "LABS_DNS_POD_LABELS",
                f"LABS_DNS_POD_LABELS must be key=value label pairs in LABS_DNS_NAMESPACE's namespace; "
                f"got {settings.LABS_DNS_POD_LABELS!r}.",
                "E.g. k8s-app=kube-dns (kube-dns/CoreDNS) or dns.operator.openshift.io/daemonset-dns=default "
                "(OpenShift), with LABS_DNS_NAMESPACE set.",
            )
        )
    bad_ports = [text for text in settings.LABS_DNS_PORTS if _port(text) is None]
    if bad_ports or not settings.LABS_DNS_PORTS:
        problems.append(
            SettingProblem(
                "labs.E004",
                "LABS_DNS_PORTS",
                f"LABS_DNS_PORTS must list ports from 1 to 65535; got {settings.LABS_DNS_PORTS!r}.",
                "53 for kube-dns/CoreDNS and NodeLocal DNSCache, 5353 for OpenShift's DNS pods.",
            )
        )
    bad_cidrs = [text for text in settings.LABS_DNS_CIDRS if _cidr(text) is None]
    if bad_cidrs:
        problems.append(
            SettingProblem(
                "labs.E005",
                "LABS_DNS_CIDRS",
                f"LABS_DNS_CIDRS has {', '.join(map(repr, bad_cidrs))}, which is not a CIDR.",
                "Write each as address/prefix, e.g. 169.254.20.10/32 for NodeLocal DNSCache.",
            )
        )
    return problems


def problems() -> list[SettingProblem]:
    """Every setting of the profile that is wrong (empty when the profile can be built)."""
    found = []
    level = settings.LABS_POD_SECURITY_ENFORCE
    if level and level not in POD_SECURITY_LEVELS:
        found.append(
            SettingProblem(
                "labs.E002",
                "LABS_POD_SECURITY_ENFORCE",
                f"LABS_POD_SECURITY_ENFORCE is {level!r}, not a Pod Security level.",
                f"Use one of {', '.join(POD_SECURITY_LEVELS)}, or empty for no label. "
                "KubeVirt's virt-launcher pods need privileged where the cluster's default is stricter.",
            )
        )
    for setting, rule in (
        ("KUBE_SERVICE_ACCOUNT_NAMESPACE", _DNS_LABEL),
        ("KUBE_SERVICE_ACCOUNT_NAME", _DNS_SUBDOMAIN),
    ):
        value = getattr(settings, setting)
        if not rule.match(value):
            found.append(
                SettingProblem(
                    "labs.E006",
                    setting,
                    f"{setting} is {value!r}, which is not a Kubernetes name.",
                    "Set it to the namespace and name of the service account the app runs as "
                    "(deploy/k8s/deployment.yaml sets both from the pod).",
                )
            )
    return found + _dns_problems()


def cluster_profile() -> ClusterProfile:
    """The profile the settings describe; ClusterProfileInvalid if they describe none."""
    found = problems()
    if found:
        raise ClusterProfileInvalid(found)
    return ClusterProfile(
        service_account_namespace=settings.KUBE_SERVICE_ACCOUNT_NAMESPACE,
        service_account_name=settings.KUBE_SERVICE_ACCOUNT_NAME,
        pod_security_enforce=settings.LABS_POD_SECURITY_ENFORCE,
        dns=DnsEgress(
            namespace=settings.LABS_DNS_NAMESPACE,
            pod_labels=tuple(p for p in map(_label_pair, settings.LABS_DNS_POD_LABELS) if p is not None),
            ports=tuple(p for p in map(_port, settings.LABS_DNS_PORTS) if p is not None),
            cidrs=tuple(settings.LABS_DNS_CIDRS),
        ),
    )


def kubevirt_sizing_from_settings() -> KubeVirtSizing:
    """The cluster's KubeVirt sizing as configured; ValueError says which setting is wrong."""
    return KubeVirtSizing.parse(
        cpu_allocation_ratio=settings.KUBEVIRT_CPU_ALLOCATION_RATIO,
        memory_overhead_ratio=settings.KUBEVIRT_MEMORY_OVERHEAD_RATIO,
        support_container_resources=settings.KUBEVIRT_SUPPORT_CONTAINER_RESOURCES,
    )
