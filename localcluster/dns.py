"""The names cluster DNS gives a namespace's VMIs, from its headless Services: pure functions.

Kubernetes DNS (kubernetes/dns `docs/specification.md`, "Records for a Headless Service") answers
for a headless Service (`clusterIP: None`) with a selector:

- `<service>.<namespace>.svc.<zone>`: an A record per ready endpoint;
- `<hostname>.<service>.<namespace>.svc.<zone>`: an A record per ready endpoint that has a hostname.

The endpoints are the pods the selector matches. A VMI's virt-launcher pod carries the VMI's labels,
its hostname is `spec.hostname` or else the VMI name's first label (KubeVirt's
`pkg/util/net/dns/sanitize.go`, used in `pkg/virt-controller/services/template.go`) and its
subdomain is `spec.subdomain`. The EndpointSlice controller gives an endpoint a hostname only when
the pod's subdomain is the Service's name (kubernetes `pkg/controller/util/endpoint/
controller_utils.go`, `ShouldSetHostname`). A pod is an endpoint once it has an IP and until it
ends (`ShouldPodBeInEndpoints`: not Failed or Succeeded; not being deleted unless the Service
publishes not-ready addresses), and it is answered while ready (for a VMI: the `Ready` condition),
or always with `publishNotReadyAddresses: true`.

Only headless Services get names here: a ClusterIP would resolve on a real cluster, but nothing
in the local cluster routes it, so a name that cannot be reached is not given.
"""

from __future__ import annotations

from typing import Any

CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX_LENGTH = 63

Obj = dict[str, Any]


def pod_hostname(vmi: Obj) -> str:
    """The hostname of a VMI's launcher pod, which KubeVirt's DHCP server also hands the guest."""
    return vmi["spec"].get("hostname") or vmi["metadata"]["name"].split(".")[0][:HOSTNAME_MAX_LENGTH]


def vmi_address(vmi: Obj) -> str | None:
    """The pod-network address the VMI's status reports (its pod IP); a Pod's own `podIP`."""
    if (vmi.get("status") or {}).get("podIP"):
        return str(vmi["status"]["podIP"])
    for interface in (vmi.get("status") or {}).get("interfaces") or []:
        if interface.get("ipAddress"):
            return str(interface["ipAddress"])
    return None


def vmi_ready(vmi: Obj) -> bool:
    conditions = (vmi.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def search_domains(namespace: str, subdomain: str = "") -> list[str]:
    """A pod's DNS search path, with the subdomain KubeVirt's DHCP server puts first.

    kubelet writes `<ns>.svc.<zone> svc.<zone> <zone>` into the pod's resolv.conf; KubeVirt adds
    `<subdomain>.<ns>.svc.<zone>` in front when the VMI sets a subdomain
    (`pkg/network/dns/resolveconf.go`, `DomainNameWithSubdomain`), so `ping beta` finds
    `beta.<subdomain>.<ns>.svc.<zone>`.
    """
    domains = [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
    if subdomain:
        domains.insert(0, f"{subdomain}.{domains[0]}")
    return domains


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def headless_service_records(namespace: str, services: list[Obj], vmis: list[Obj]) -> dict[str, list[str]]:
    """Fully qualified name -> addresses, for every headless Service of the namespace."""
    records: dict[str, list[str]] = {}
    for service in services:
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        if spec.get("clusterIP") != "None" or not selector:
            continue
        name = service["metadata"]["name"]
        service_fqdn = f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        for vmi in vmis:
            address = vmi_address(vmi)
            if (
                address is None
                or (vmi.get("status") or {}).get("phase") in ("Failed", "Succeeded")
                or (vmi["metadata"].get("deletionTimestamp") and not publish_not_ready)
                or not _selects(selector, vmi["metadata"].get("labels") or {})
                or not (publish_not_ready or vmi_ready(vmi))
            ):
                continue
            records.setdefault(service_fqdn, []).append(address)
            if vmi["spec"].get("subdomain") == name:
                records.setdefault(f"{pod_hostname(vmi)}.{service_fqdn}", []).append(address)
    return records
