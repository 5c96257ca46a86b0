"""Cluster objects of a lab instance, built as plain dicts from explicit arguments.

Nothing here calls the cluster or reads settings: `labs.cluster` sends what these functions
return, and the tests compare it as data. Names and labels are made here and nowhere else.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from labs import launcher_sizing

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "laborchestrator"
# Which installation made the object (labs.installation): several may share a cluster.
INSTALLATION_LABEL = "laborchestrator/installation"
INSTANCE_LABEL = "laborchestrator/instance"
LAB_LABEL = "laborchestrator/lab"
OWNER_LABEL = "laborchestrator/owner"
MACHINE_LABEL = "laborchestrator/machine"
# Every namespace any installation of this application created.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# Those made by a version before installation labels: no installation may assume they are its own.
UNLABELLED_SELECTOR = f"{MANAGED_SELECTOR},!{INSTALLATION_LABEL}"

NETWORK_POLICY_NAME = "lab-isolation"
# The headless Service whose name is every machine's subdomain: `alpha.lab.<namespace>.svc.<zone>`,
# and `ping alpha` from the other machines (KubeVirt's DHCP puts `lab.<namespace>.svc.<zone>` first
# in the guest's DNS search path).
MACHINES_SERVICE_NAME = "lab"
RESOURCE_QUOTA_NAME = "lab-quota"
# The ClusterRole (deploy/k8s/rbac.yaml) that grants the app its rights inside a lab namespace,
# through a RoleBinding of this name created right after the namespace.
LAB_CLUSTER_ROLE = "laborchestrator-lab"
ROLE_BINDING_NAME = "laborchestrator-lab"
RBAC_GROUP = "rbac.authorization.k8s.io"
POD_SECURITY_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
VMI_COUNT_QUOTA_KEY = "count/virtualmachineinstances.kubevirt.io"
MACHINE_KIND_VM = "vm"
MACHINE_KIND_CONTAINER = "container"
# The one container of a container machine's Pod (pods/exec and pods/log name it).
CONTAINER_NAME = "machine"
# KubeVirt reads the user data from this key of the referenced Secret.
USERDATA_KEY = "userdata"
# The user step checks log in as (labs/machine_exec.py), made by cloud-init on machines with SSH.
CHECK_USER = "labcheck"

# A lab machine's extra cloud-init user data (see load_extra_user_data). Real #cloud-config files
# are a few KiB and a handful of levels deep; the Secret holding them may not exceed 1 MiB.
EXTRA_USER_DATA_MAX_BYTES = 64 * 1024
EXTRA_USER_DATA_MAX_DEPTH = 32

_LABEL_VALUE_INVALID = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class DnsEgress:
    """Where a lab's machines may send DNS queries: pods selected by labels in a namespace, and/or
    addresses (CIDRs), on these ports (UDP and TCP each).

    The default is kube-dns/CoreDNS as most clusters run it. OpenShift: namespace `openshift-dns`,
    labels `dns.operator.openshift.io/daemonset-dns=default`, port 5353. NodeLocal DNSCache: its
    link-local address, e.g. CIDR 169.254.20.10/32, port 53.
    """

    namespace: str = "kube-system"
    pod_labels: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    ports: tuple[int, ...] = (53,)
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterProfile:
    """What differs from one cluster to the next, passed in from settings (labs.cluster_profile)."""

    # The app's own service account, the subject of the RoleBinding in each lab namespace.
    service_account_namespace: str = "laborchestrator"
    service_account_name: str = "laborchestrator"
    # The Pod Security level lab namespaces enforce ("" leaves the cluster's default): KubeVirt's
    # virt-launcher pods need `privileged` where the default is stricter.
    pod_security_enforce: str = "privileged"
    dns: DnsEgress = DnsEgress()


@dataclass(frozen=True)
class CheckAccess:
    """What cloud-init gives a machine so that checks can log in: the check user's authorized key
    (the instance's public key) and the host key the app generated for the machine."""

    authorized_key: str
    host_private_key: str
    host_public_key: str


@dataclass(frozen=True)
class KernelBoot:
    """A kernel-boot image (KubeVirt's `kernelBoot.container`): where its kernel and initrd are."""

    kernel_path: str
    initrd_path: str = ""
    kernel_args: str = ""


@dataclass(frozen=True)
class MachineSpec:
    """What one machine of an instance is built from (an `InstanceMachine` row, as plain values):
    a VMI (kind `vm`) or a Pod (kind `container`, whose image is any OCI image)."""

    name: str
    image_reference: str
    cores: int
    memory_mib: int
    username: str
    password: str
    has_vnc: bool
    has_serial_console: bool
    extra_user_data: str = ""
    check_access: CheckAccess | None = None
    kind: str = MACHINE_KIND_VM
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    # The image's registry credentials (a `.dockerconfigjson`), copied into the lab namespace.
    pull_credentials: dict[str, Any] | None = None
    kernel_boot: KernelBoot | None = None  # None: the image is a containerDisk


# --- Names and labels ----------------------------------------------------------------------------


def namespace_name(*, prefix: str, instance_id: int) -> str:
    return f"{prefix}-{instance_id}"


def secret_name(machine_name: str) -> str:
    return f"{machine_name}-cloudinit"


def pull_secret_name(machine_name: str) -> str:
    return f"{machine_name}-image-pull"


def label_value(value: str) -> str:
    """A label value from free text: at most 63 characters, starting and ending alphanumeric."""
    cleaned = _LABEL_VALUE_INVALID.sub("-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def instance_labels(
    *, installation_id: str, instance_id: int, lab_slug: str, owner_id: int
) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        INSTALLATION_LABEL: installation_id,
        INSTANCE_LABEL: str(instance_id),
        LAB_LABEL: label_value(lab_slug),
        OWNER_LABEL: str(owner_id),
    }


def machine_labels(instance_labels: dict[str, str], machine_name: str) -> dict[str, str]:
    return {**instance_labels, MACHINE_LABEL: machine_name}


def installation_selector(installation_id: str) -> str:
    """Selects the namespaces (and objects) this installation created, and no other's."""
    return f"{MANAGED_SELECTOR},{INSTALLATION_LABEL}={installation_id}"


def instance_selector(instance_id: int) -> str:
    """An instance's objects inside its own namespace (which the database names, so the installation
    label is not needed here, and objects made before it existed are still found)."""
    return f"{MANAGED_SELECTOR},{INSTANCE_LABEL}={instance_id}"


def belongs_to(labels: dict[str, str], *, installation_id: str, instance_id: int) -> bool:
    """Whether an object with these labels was made by this installation for this instance."""
    return labels.get(INSTALLATION_LABEL) == installation_id and labels.get(INSTANCE_LABEL) == str(
        instance_id
    )


def instance_pod_selector(instance_labels: dict[str, str]) -> dict[str, str]:
    """The labels that pick the instance's VMIs (their virt-launcher pods carry the VMI's labels)."""
    return {
        MANAGED_BY_LABEL: instance_labels[MANAGED_BY_LABEL],
        INSTANCE_LABEL: instance_labels[INSTANCE_LABEL],
    }


# --- Objects ---------------------------------------------------------------------------------------


def make_namespace(*, name: str, labels: dict[str, str], pod_security_enforce: str = "") -> dict[str, Any]:
    all_labels = dict(labels)
    if pod_security_enforce:
        all_labels[POD_SECURITY_ENFORCE_LABEL] = pod_security_enforce
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": all_labels}}


def make_role_binding(
    *, namespace: str, labels: dict[str, str], service_account_namespace: str, service_account_name: str
) -> dict[str, Any]:
    """The app's rights inside this namespace only: its lab ClusterRole, bound to its own account."""
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROLE_BINDING_NAME, "namespace": namespace, "labels": dict(labels)},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": LAB_CLUSTER_ROLE},
        "subjects": [
            {"kind": "ServiceAccount", "name": service_account_name, "namespace": service_account_namespace}
        ],
    }


def _dns_peers(dns: DnsEgress) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = []
    if dns.namespace:
        peer: dict[str, Any] = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": dns.namespace}}
        }
        if dns.pod_labels:
            peer["podSelector"] = {"matchLabels": dict(dns.pod_labels)}
        peers.append(peer)
    peers += [{"ipBlock": {"cidr": cidr}} for cidr in dns.cidrs]
    return peers


def make_network_policy(*, namespace: str, labels: dict[str, str], dns: DnsEgress) -> dict[str, Any]:
    """Traffic only between the pods (VMIs) of this namespace, both ways, plus DNS (`dns`).

    VNC and serial consoles do not cross the pod network, so this never blocks them.
    """
    same_namespace = [{"podSelector": {}}]
    egress: list[dict[str, Any]] = [{"to": same_namespace}]
    if peers := _dns_peers(dns):
        ports = [{"protocol": protocol, "port": port} for port in dns.ports for protocol in ("UDP", "TCP")]
        egress.append({"to": peers, "ports": ports})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": NETWORK_POLICY_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": same_namespace}],
            "egress": egress,
        },
    }


def make_machines_service(*, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A headless Service over the instance's VMIs, so cluster DNS names each machine.

    With `hostname` and `subdomain` set on the VMIs (`make_vmi`), cluster DNS answers
    `<machine>.lab.<namespace>.svc.cluster.local` with the machine's pod IP, which with the bridge
    binding is the guest's own address. No ports and no cluster IP: nothing is load-balanced, the
    Service only names. Names are published before the pods are ready, so a machine keeps its name
    while it boots and while it is paused.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": MACHINES_SERVICE_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "clusterIP": "None",
            "selector": instance_pod_selector(labels),
            "publishNotReadyAddresses": True,
        },
    }


def machine_shape(machine: MachineSpec) -> launcher_sizing.MachineShape:
    """What of the machine decides its launcher pod; make_vmi builds the VMI of this shape."""
    return launcher_sizing.MachineShape(
        cores=machine.cores,
        memory_mib=machine.memory_mib,
        has_vnc=machine.has_vnc,
        has_serial_console=machine.has_serial_console,
        container_disks=1,
    )


def machine_pod_size(machine: MachineSpec, sizing: launcher_sizing.KubeVirtSizing) -> launcher_sizing.PodSize:
    """The pod a machine runs in: a VM's virt-launcher pod, or a container machine's own Pod."""
    if machine.kind == MACHINE_KIND_CONTAINER:
        return launcher_sizing.container_pod_size(cores=machine.cores, memory_mib=machine.memory_mib)
    return launcher_sizing.launcher_pod_size(machine_shape(machine), sizing)


def make_resource_quota(
    *,
    namespace: str,
    labels: dict[str, str],
    machines: list[MachineSpec],
    sizing: launcher_sizing.KubeVirtSizing,
) -> dict[str, Any]:
    """Room for exactly the lab's machines: the virt-launcher pod KubeVirt makes for each VM,
    requests and limits (labs/launcher_sizing.py), each container machine's Pod, one VMI per VM.

    The limits keep an instance from bursting beyond its lab; KubeVirt gives each compute container a
    CPU limit of its vCPUs because of them.
    """
    sizes = [machine_pod_size(m, sizing) for m in machines]
    total = sum(sizes[1:], sizes[0]) if sizes else launcher_sizing.PodSize(0, 0, 0, 0)
    mebibytes = launcher_sizing.MIB
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": RESOURCE_QUOTA_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "hard": {
                "requests.cpu": f"{total.cpu_request}m",
                "limits.cpu": f"{total.cpu_limit}m",
                "requests.memory": f"{math.ceil(total.memory_request / mebibytes)}Mi",
                "limits.memory": f"{math.ceil(total.memory_limit / mebibytes)}Mi",
                VMI_COUNT_QUOTA_KEY: str(sum(m.kind == MACHINE_KIND_VM for m in machines)),
            }
        },
    }


def _check_user_data_shape(text: str) -> None:
    """Depth and aliases, read from YAML's event stream: it is produced without recursion, while
    composing a document nested thousands deep exhausts Python's stack, and aliases can make a
    small document arbitrarily deep once composed."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError("YAML aliases (*name, <<: *name) are not supported here; write the values out.")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > EXTRA_USER_DATA_MAX_DEPTH:
                raise ValueError(f"It is nested more than {EXTRA_USER_DATA_MAX_DEPTH} levels deep.")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_extra_user_data(text: str) -> dict[str, Any]:
    """A lab machine's extra cloud-init user data as a mapping; ValueError says what is wrong.

    The one loader of it: the admin and the API validate with it when a lab is saved, and a start
    builds the Secret with it, so what was saved always starts. YAML's safe loader only (a
    `!!python/...` tag is an error, never code), at most EXTRA_USER_DATA_MAX_BYTES and
    EXTRA_USER_DATA_MAX_DEPTH levels, no aliases.
    """
    if not text.strip():
        return {}
    size = len(text.encode("utf-8", errors="replace"))
    if size > EXTRA_USER_DATA_MAX_BYTES:
        raise ValueError(f"It is {size} bytes long; the limit is {EXTRA_USER_DATA_MAX_BYTES} bytes.")
    try:
        _check_user_data_shape(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"It is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("It must be a #cloud-config mapping (key: value lines), not a list or plain text.")
    return data


class _CloudConfigDumper(yaml.SafeDumper):
    """Multi-line strings (keys) as literal blocks, the way people write them in a #cloud-config."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_CloudConfigDumper.add_representer(str, _represent_text)


def check_user_config(access: CheckAccess) -> dict[str, Any]:
    """The check user (key login only, passwordless sudo where the image has sudo)."""
    return {
        "name": CHECK_USER,
        "gecos": "Lab Orchestrator step checks",
        "shell": "/bin/sh",
        "lock_passwd": True,
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": [access.authorized_key],
    }


def cloud_init_user_data(
    *, password: str, extra_user_data: str = "", check_access: CheckAccess | None = None
) -> str:
    """`#cloud-config` giving the image's default user the generated password, and with
    `check_access` the check user and the machine's SSH host key.

    The lab's extra user data is merged first and the login keys win, so the password the
    student is shown always works; the check user is added to the extra data's `users` (with
    `default` first when the extra data lists none). Raises ValueError if the extra data is not a
    YAML mapping.
    """
    extra = load_extra_user_data(extra_user_data)
    chpasswd = extra.get("chpasswd") if isinstance(extra.get("chpasswd"), dict) else {}
    config = {
        **extra,
        "password": password,
        "chpasswd": {**chpasswd, "expire": False},
        "ssh_pwauth": True,
    }
    if check_access is not None:
        users = extra.get("users") if isinstance(extra.get("users"), list) else ["default"]
        others = [u for u in users if not (isinstance(u, dict) and u.get("name") == CHECK_USER)]
        config["users"] = [*others, check_user_config(check_access)]
        ssh_keys = extra.get("ssh_keys") if isinstance(extra.get("ssh_keys"), dict) else {}
        config["ssh_keys"] = {
            **ssh_keys,
            "ed25519_private": check_access.host_private_key,
            "ed25519_public": check_access.host_public_key,
        }
    # No line wrapping: a key is one line, as in an authorized_keys file (and simple images parse it so).
    return "#cloud-config\n" + yaml.dump(
        config, Dumper=_CloudConfigDumper, sort_keys=False, default_flow_style=False, width=1 << 20
    )


def make_userdata_secret(*, namespace: str, labels: dict[str, str], machine: MachineSpec) -> dict[str, Any]:
    userdata = cloud_init_user_data(
        password=machine.password,
        extra_user_data=machine.extra_user_data,
        check_access=machine.check_access,
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(machine.name),
            "namespace": namespace,
            "labels": machine_labels(labels, machine.name),
        },
        "data": {USERDATA_KEY: base64.b64encode(userdata.encode()).decode("ascii")},
    }


def make_pull_secret(*, namespace: str, labels: dict[str, str], machine: MachineSpec) -> dict[str, Any]:
    """The machine image's registry credentials, as the kubelet reads them (`imagePullSecret`)."""
    config = json.dumps(machine.pull_credentials, separators=(",", ":")).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": pull_secret_name(machine.name),
            "namespace": namespace,
            "labels": machine_labels(labels, machine.name),
        },
        "data": {".dockerconfigjson": base64.b64encode(config).decode("ascii")},
    }


def container_disk(machine: MachineSpec) -> dict[str, Any]:
    source: dict[str, Any] = {"image": machine.image_reference}
    if machine.pull_credentials is not None:
        source["imagePullSecret"] = pull_secret_name(machine.name)
    return source


def kernel_boot_firmware(machine: MachineSpec, boot: KernelBoot) -> dict[str, Any]:
    container = {**container_disk(machine), "kernelPath": boot.kernel_path}
    if boot.initrd_path:
        container["initrdPath"] = boot.initrd_path
    firmware: dict[str, Any] = {"kernelBoot": {"container": container}}
    if boot.kernel_args:
        firmware["kernelBoot"]["kernelArgs"] = boot.kernel_args
    return firmware


def make_vmi(*, namespace: str, labels: dict[str, str], machine: MachineSpec) -> dict[str, Any]:
    """A VMI of the machine; its login comes from the Secret, so the password is not in here."""
    memory = f"{machine.memory_mib}Mi"
    devices: dict[str, Any] = {
        "autoattachGraphicsDevice": machine.has_vnc,
        "autoattachSerialConsole": machine.has_serial_console,
        "disks": [
            *([] if machine.kernel_boot else [{"name": "rootdisk", "disk": {"bus": "virtio"}}]),
            {"name": "cloudinit", "disk": {"bus": "virtio"}},
        ],
        # Bridge, not masquerade: the guest gets the pod IP by DHCP, so what a student sees in
        # `ip addr` is the address status reports and the tutorial shows.
        "interfaces": [{"name": "default", "bridge": {}}],
    }
    if machine.has_vnc:
        # An absolute pointer, so the guest's pointer is where the student's is in noVNC. USB is
        # KubeVirt's default bus, driven by every guest OS without extra drivers (virtio is not).
        devices["inputs"] = [{"name": "tablet", "type": "tablet", "bus": "usb"}]
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": machine.name,
            "namespace": namespace,
            "labels": machine_labels(labels, machine.name),
        },
        "spec": {
            "hostname": machine.name,
            "subdomain": MACHINES_SERVICE_NAME,
            # Lab machines are disposable: a stop should not wait 30 s per VM for a clean shutdown.
            "terminationGracePeriodSeconds": 0,
            "domain": {
                "cpu": {"cores": machine.cores},
                "memory": {"guest": memory},
                # Memory requested and limited at the guest's size: never overcommitted, never more.
                # No CPU request or limit: KubeVirt requests vCPUs / cpuAllocationRatio and limits
                # the vCPUs (our quota has limits.cpu). Requests equal to limits for both would ask
                # for Guaranteed QoS: a whole core reserved per vCPU for mostly idle lab machines,
                # 100Mi more overhead and every support container raised to its limits.
                "resources": {"requests": {"memory": memory}, "limits": {"memory": memory}},
                "devices": devices,
                **(
                    {"firmware": kernel_boot_firmware(machine, machine.kernel_boot)}
                    if machine.kernel_boot
                    else {}
                ),
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [
                *(
                    []
                    if machine.kernel_boot
                    else [{"name": "rootdisk", "containerDisk": container_disk(machine)}]
                ),
                {
                    "name": "cloudinit",
                    "cloudInitNoCloud": {"secretRef": {"name": secret_name(machine.name)}},
                },
            ],
        },
    }


def make_pod(*, namespace: str, labels: dict[str, str], machine: MachineSpec) -> dict[str, Any]:
    """A container machine's Pod.

    - restartPolicy Always: a lab machine whose command ends comes back, as a VM that reboots; a
      command that keeps failing shows as restarting (CrashLoopBackOff, with the exit code).
    - requests = limits (Guaranteed QoS): a container gets exactly the cores and memory the lab
      states, counted so in the quota; over the memory limit it is OOM-killed and restarted.
    - Never privileged, no privilege escalation, seccomp RuntimeDefault, no service account token,
      no service links: a student's shell reaches nothing of the cluster's (the admission policy
      refuses the rest, deploy/k8s/admission-policy.yaml).
    - The shell user: a numeric `username` runs the container as that UID; a name is the image's
      business (its /etc/passwd), so the image's own user stays.
    - hostname + subdomain as for VMs: `<machine>.lab.<namespace>.svc.<zone>` names it.
    """
    quantity = {"cpu": str(machine.cores), "memory": f"{machine.memory_mib}Mi"}
    security: dict[str, Any] = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if machine.username.isdigit():
        security["runAsUser"] = int(machine.username)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": machine.image_reference,
        "resources": {"requests": dict(quantity), "limits": dict(quantity)},
        "securityContext": security,
    }
    if machine.command:
        container["command"] = list(machine.command)
    if machine.args:
        container["args"] = list(machine.args)
    if machine.env:
        container["env"] = [{"name": key, "value": value} for key, value in machine.env]
    if machine.ports:
        container["ports"] = [{"containerPort": port, "protocol": "TCP"} for port in machine.ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": machine.name,
            "namespace": namespace,
            "labels": machine_labels(labels, machine.name),
        },
        "spec": {
            "hostname": machine.name,
            "subdomain": MACHINES_SERVICE_NAME,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [container],
        },
    }


@dataclass(frozen=True)
class InstanceManifests:
    """Everything one instance needs, in the order it must be created."""

    namespace: dict[str, Any]
    role_binding: dict[str, Any]
    network_policy: dict[str, Any]
    resource_quota: dict[str, Any]
    service: dict[str, Any]
    secrets: list[dict[str, Any]]
    vmis: list[dict[str, Any]]
    pods: list[dict[str, Any]] = field(default_factory=list)


def make_instance_manifests(
    *,
    installation_id: str,
    namespace: str,
    instance_id: int,
    lab_slug: str,
    owner_id: int,
    machines: list[MachineSpec],
    sizing: launcher_sizing.KubeVirtSizing,
    profile: ClusterProfile,
) -> InstanceManifests:
    labels = instance_labels(
        installation_id=installation_id, instance_id=instance_id, lab_slug=lab_slug, owner_id=owner_id
    )
    vms = [m for m in machines if m.kind != MACHINE_KIND_CONTAINER]
    containers = [m for m in machines if m.kind == MACHINE_KIND_CONTAINER]
    return InstanceManifests(
        namespace=make_namespace(
            name=namespace, labels=labels, pod_security_enforce=profile.pod_security_enforce
        ),
        role_binding=make_role_binding(
            namespace=namespace,
            labels=labels,
            service_account_namespace=profile.service_account_namespace,
            service_account_name=profile.service_account_name,
        ),
        network_policy=make_network_policy(namespace=namespace, labels=labels, dns=profile.dns),
        resource_quota=make_resource_quota(
            namespace=namespace, labels=labels, machines=machines, sizing=sizing
        ),
        service=make_machines_service(namespace=namespace, labels=labels),
        secrets=[make_userdata_secret(namespace=namespace, labels=labels, machine=m) for m in vms]
        + [
            make_pull_secret(namespace=namespace, labels=labels, machine=m)
            for m in machines
            if m.pull_credentials
        ],
        vmis=[make_vmi(namespace=namespace, labels=labels, machine=m) for m in vms],
        pods=[make_pod(namespace=namespace, labels=labels, machine=m) for m in containers],
    )
