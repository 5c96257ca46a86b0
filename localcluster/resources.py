"""The API resources the local cluster serves, described once.

Routing, discovery, RBAC messages, validation and the call log all read this table, so adding a
kind means adding one `ResourceType` here (and, if it has behaviour, a hook in `cluster.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CORE_GROUP = ""
NETWORKING_GROUP = "networking.k8s.io"
RBAC_GROUP = "rbac.authorization.k8s.io"
KUBEVIRT_GROUP = "kubevirt.io"
SUBRESOURCES_GROUP = "subresources.kubevirt.io"

CRUD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = CRUD_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Name rule the real registry applies: "label" (RFC 1123 DNS label, 63 chars),
    # "subdomain" (RFC 1123 subdomain, 253 chars) or "label1035" (services).
    name_rule: str = "subdomain"
    # Custom resources (KubeVirt) keep apiVersion/kind on list items and validate against the
    # KubeVirt swagger; built-ins validate against kubernetes-validate's schemas.
    custom: bool = False
    # Kinds whose real registry strategy sets metadata.generation.
    has_generation: bool = False
    subresources: tuple[str, ...] = field(default=())

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def qualified(self) -> str:
        """`plural.group` as used in error messages and quota keys (`secrets` for core)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACES = ResourceType(
    CORE_GROUP,
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    namespaced=False,
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    short_names=("ns",),
    name_rule="label",
    subresources=("status", "finalize"),
)
SECRETS = ResourceType(CORE_GROUP, "v1", "secrets", "secret", "Secret", namespaced=True)
RESOURCE_QUOTAS = ResourceType(
    CORE_GROUP,
    "v1",
    "resourcequotas",
    "resourcequota",
    "ResourceQuota",
    namespaced=True,
    short_names=("quota",),
    subresources=("status",),
)
SERVICES = ResourceType(
    CORE_GROUP,
    "v1",
    "services",
    "service",
    "Service",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    name_rule="label1035",
    subresources=("status",),
)
EVENTS = ResourceType(CORE_GROUP, "v1", "events", "event", "Event", namespaced=True, short_names=("ev",))
NETWORK_POLICIES = ResourceType(
    NETWORKING_GROUP,
    "v1",
    "networkpolicies",
    "networkpolicy",
    "NetworkPolicy",
    namespaced=True,
    short_names=("netpol",),
    has_generation=True,
)
# Namespaced grants made at run time (the app binds its lab role in each namespace it creates).
# ClusterRoles, Roles and ClusterRoleBindings come from the RBAC manifest only (`--rbac`).
PODS = ResourceType(
    CORE_GROUP,
    "v1",
    "pods",
    "pod",
    "Pod",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=("status", "log", "exec"),
)
ROLE_BINDINGS = ResourceType(RBAC_GROUP, "v1", "rolebindings", "rolebinding", "RoleBinding", namespaced=True)
VIRTUAL_MACHINE_INSTANCES = ResourceType(
    KUBEVIRT_GROUP,
    "v1",
    "virtualmachineinstances",
    "virtualmachineinstance",
    "VirtualMachineInstance",
    namespaced=True,
    short_names=("vmi", "vmis"),
    categories=("all",),
    custom=True,
    has_generation=True,
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    SECRETS,
    RESOURCE_QUOTAS,
    SERVICES,
    EVENTS,
    PODS,
    NETWORK_POLICIES,
    ROLE_BINDINGS,
    VIRTUAL_MACHINE_INSTANCES,
)

# KubeVirt's aggregated API (virt-api) serves these under subresources.kubevirt.io/v1; RBAC sees
# them as `virtualmachineinstances/<name>` in that group. Value = the HTTP method each answers.
VMI_SUBRESOURCES: dict[str, str] = {
    "vnc": "GET",
    "console": "GET",
    "vnc/screenshot": "GET",
    "pause": "PUT",
    "unpause": "PUT",
    "portforward": "GET",  # /portforward/{port}[/{protocol}]
}

# Groups in the order /apis lists them.
GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    (NETWORKING_GROUP, "v1"),
    (RBAC_GROUP, "v1"),
    (KUBEVIRT_GROUP, "v1"),
    (SUBRESOURCES_GROUP, "v1"),
)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.version == version and rt.plural == plural:
            return rt
    return None


# Core subresources served on pods, and the HTTP method each answers. `exec` is a websocket (GET) or
# SPDY (POST) upgrade; RBAC checks `create` on pods/exec for both, as kube-apiserver does since the
# AuthorizePodWebsocketUpgradeCreatePermission gate (Kubernetes 1.30, on by default).
POD_SUBRESOURCES: dict[str, tuple[str, ...]] = {"log": ("GET",), "exec": ("GET", "POST")}


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]
