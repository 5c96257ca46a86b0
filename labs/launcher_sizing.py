"""What a lab machine's virt-launcher pod asks of its namespace's quota: KubeVirt's formula, in one place.

KubeVirt does not run a VMI's guest in the VMI's own resources: it renders a virt-launcher pod whose
`compute` container gets the guest's memory plus an overhead, and adds support containers. The
namespace's ResourceQuota must cover that pod, or the pod is refused ("exceeded quota") and the VMI
stays Pending. The sources (KubeVirt v1.x):

- pkg/hypervisor/kvm/hypervisorbackend.go `GetMemoryOverhead`: 240Mi fixed (virt-launcher-monitor,
  virt-launcher, virtlogd, virtqemud, QEMU), 1/512 of the memory request for page tables, 8Mi per
  vCPU, 8Mi for the IOThread, 32Mi of video memory with a graphics device, +100Mi under Guaranteed
  QoS; then times `additionalGuestMemoryOverheadRatio` when the cluster sets it;
- pkg/virt-controller/services/renderresources.go: CPU request = vCPUs / `cpuAllocationRatio`; a
  CPU limit of the vCPUs when the namespace's quota has `limits.cpu`; the `container-disk-binary`
  init container (10m/1M requested, 100m/40M limits);
- pkg/container-disk/container-disk.go: one container per containerDisk volume and its `-init`
  twin, each 1m/1M requested and 10m/40M limits;
- pkg/virt-controller/services/serialconsolelog.go: the `guest-console-log` sidecar when a serial
  console is attached, 5m/35M requested and 15m/60M limits;
- support container sizes can be overridden by the cluster (`supportContainerResources`);
- a pod's total (k8s component-helpers resource.PodRequests/PodLimits): containers and sidecars add
  up; an init container runs beside the sidecars only.

Lab machines are not Guaranteed QoS (see `labs.manifests.make_vmi`): memory is requested and limited
at the guest's size, CPU only by topology, so the overhead has no +100Mi and support containers keep
their small requests. Nothing here calls the cluster or reads settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MIB = 2**20
# GetMemoryOverhead's parts, in bytes.
FIXED_OVERHEAD = 240 * MIB
PER_VCPU_OVERHEAD = 8 * MIB
IOTHREAD_OVERHEAD = 8 * MIB
VIDEO_OVERHEAD = 32 * MIB

CONTAINER_DISK = "container-disk"
GUEST_CONSOLE_LOG = "guest-console-log"
SUPPORT_CONTAINER_TYPES = (CONTAINER_DISK, GUEST_CONSOLE_LOG)

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "": 1,
}


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("40M", "100m", "1.5Gi", "2") as a number of units (bytes or cores)."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, 1
    try:
        amount = Decimal(number) * Decimal(scale)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a quantity (e.g. 40M, 64Mi, 100m, 1)") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} is not a quantity (e.g. 40M, 64Mi, 100m, 1)")
    return amount


@dataclass(frozen=True)
class ContainerSize:
    """Requests and limits of one container: CPU in millicores, memory in bytes."""

    cpu_request: int
    memory_request: int
    cpu_limit: int
    memory_limit: int


# KubeVirt's defaults for the support containers.
CONTAINER_DISK_SIZE = ContainerSize(
    cpu_request=1, memory_request=10**6, cpu_limit=10, memory_limit=40 * 10**6
)
CONTAINER_DISK_BINARY_SIZE = ContainerSize(
    cpu_request=10, memory_request=10**6, cpu_limit=100, memory_limit=40 * 10**6
)
GUEST_CONSOLE_LOG_SIZE = ContainerSize(
    cpu_request=5, memory_request=35 * 10**6, cpu_limit=15, memory_limit=60 * 10**6
)


@dataclass(frozen=True)
class KubeVirtSizing:
    """The cluster's KubeVirt configuration that changes a launcher pod's size (the KubeVirt CR's
    `spec.configuration`): `developerConfiguration.cpuAllocationRatio`,
    `additionalGuestMemoryOverheadRatio`, and `supportContainerResources` overrides as
    {type: {"requests"|"limits": {"cpu"|"memory": quantity}}}."""

    cpu_allocation_ratio: int = 10
    memory_overhead_ratio: Decimal | None = None
    support_containers: dict[str, dict[str, dict[str, Decimal]]] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, *, cpu_allocation_ratio: Any, memory_overhead_ratio: Any, support_container_resources: Any
    ) -> KubeVirtSizing:
        """From settings as written (see the README); ValueError says what is wrong."""
        try:
            ratio = int(cpu_allocation_ratio)
        except (TypeError, ValueError):
            raise ValueError(
                f"the CPU allocation ratio {cpu_allocation_ratio!r} is not a whole number"
            ) from None
        if ratio < 1:
            raise ValueError(f"the CPU allocation ratio must be at least 1, not {ratio}")
        overhead_ratio = None
        if memory_overhead_ratio not in (None, ""):
            try:
                overhead_ratio = Decimal(str(memory_overhead_ratio))
            except InvalidOperation:
                overhead_ratio = None
            if overhead_ratio is None or not overhead_ratio.is_finite() or overhead_ratio < 1:
                raise ValueError(
                    f"the memory overhead ratio {memory_overhead_ratio!r} must be a number of at least 1.0"
                )
        return cls(
            cpu_allocation_ratio=ratio,
            memory_overhead_ratio=overhead_ratio,
            support_containers=_parse_support(support_container_resources),
        )

    def size(self, kind: str, default: ContainerSize) -> ContainerSize:
        """A support container's size with the cluster's overrides (a zero counts as unset, as upstream)."""
        override = self.support_containers.get(kind, {})

        def pick(section: str, resource: str, fallback: int) -> int:
            value = override.get(section, {}).get(resource)
            if not value:
                return fallback
            return math.ceil(value * 1000) if resource == "cpu" else math.ceil(value)

        return ContainerSize(
            cpu_request=pick("requests", "cpu", default.cpu_request),
            memory_request=pick("requests", "memory", default.memory_request),
            cpu_limit=pick("limits", "cpu", default.cpu_limit),
            memory_limit=pick("limits", "memory", default.memory_limit),
        )


def _parse_support(entries: Any) -> dict[str, dict[str, dict[str, Decimal]]]:
    if entries in (None, ""):
        return {}
    if not isinstance(entries, list):
        raise ValueError("the support container resources must be a list of {type, resources}")
    parsed: dict[str, dict[str, dict[str, Decimal]]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in SUPPORT_CONTAINER_TYPES:
            types = ", ".join(SUPPORT_CONTAINER_TYPES)
            raise ValueError(f"each support container entry needs a type among {types}: {entry!r}")
        resources = entry.get("resources") or {}
        if not isinstance(resources, dict) or set(resources) - {"requests", "limits"}:
            raise ValueError(f"{entry['type']} may have only requests and limits: {resources!r}")
        sections: dict[str, dict[str, Decimal]] = {}
        for section, values in resources.items():
            if not isinstance(values, dict) or set(values) - {"cpu", "memory"}:
                raise ValueError(f"{entry['type']} {section} may set only cpu and memory: {values!r}")
            sections[section] = {resource: parse_quantity(value) for resource, value in values.items()}
        parsed[str(entry["type"])] = sections
    return parsed


@dataclass(frozen=True)
class MachineShape:
    """What of a lab machine decides its launcher pod (see labs.manifests.make_vmi)."""

    cores: int
    memory_mib: int
    has_vnc: bool
    has_serial_console: bool
    container_disks: int = 1


@dataclass(frozen=True)
class PodSize:
    """A pod's total: CPU in millicores, memory in bytes."""

    cpu_request: int
    memory_request: int
    cpu_limit: int
    memory_limit: int

    def __add__(self, other: PodSize) -> PodSize:
        return PodSize(
            self.cpu_request + other.cpu_request,
            self.memory_request + other.memory_request,
            self.cpu_limit + other.cpu_limit,
            self.memory_limit + other.memory_limit,
        )


def memory_overhead(machine: MachineShape, sizing: KubeVirtSizing) -> int:
    """GetMemoryOverhead for a lab machine, in bytes."""
    memory = machine.memory_mib * MIB
    # Page tables: the memory request in whole kB (rounded up), back in bytes, /512.
    overhead = (math.ceil(memory / 1000) * 1000) // 512
    overhead += FIXED_OVERHEAD + PER_VCPU_OVERHEAD * max(machine.cores, 1) + IOTHREAD_OVERHEAD
    if machine.has_vnc:
        overhead += VIDEO_OVERHEAD
    if sizing.memory_overhead_ratio is not None:
        # MultiplyMemory: kB rounded up, times (ratio - 1), truncated, back in bytes. Rounded up
        # here to the next kB as well, so float rounding upstream can never exceed our figure.
        extra = Decimal(math.ceil(overhead / 1000)) * (sizing.memory_overhead_ratio - 1)
        overhead += math.ceil(extra) * 1000
    return overhead


def launcher_pod_size(machine: MachineShape, sizing: KubeVirtSizing) -> PodSize:
    """The virt-launcher pod's requests and limits for one lab machine."""
    memory = machine.memory_mib * MIB + memory_overhead(machine, sizing)
    compute = ContainerSize(
        cpu_request=math.ceil(machine.cores * 1000 / sizing.cpu_allocation_ratio),
        memory_request=memory,
        cpu_limit=machine.cores * 1000,  # the automatic CPU limit: our quota limits CPU
        memory_limit=memory,
    )
    disk = sizing.size(CONTAINER_DISK, CONTAINER_DISK_SIZE)
    binary = sizing.size(CONTAINER_DISK, CONTAINER_DISK_BINARY_SIZE)
    # Budgeted whenever a serial console is attached, even if the cluster turned console logs off:
    # a quota a little too large costs nothing, one too small stops the machine.
    log = sizing.size(GUEST_CONSOLE_LOG, GUEST_CONSOLE_LOG_SIZE) if machine.has_serial_console else None
    running = [compute, *[disk] * machine.container_disks, *([log] if log else [])]
    sidecars = [log] if log else []
    # Each init container runs beside the sidecars only; the binary copier exists with containerDisks.
    init_alone = [binary, *[disk] * machine.container_disks] if machine.container_disks else []

    def total(pick: str) -> int:
        steady = sum(getattr(c, pick) for c in running)
        beside_sidecars = sum(getattr(c, pick) for c in sidecars)
        peak = max((getattr(c, pick) + beside_sidecars for c in init_alone), default=0)
        return max(steady, peak)

    return PodSize(total("cpu_request"), total("memory_request"), total("cpu_limit"), total("memory_limit"))


def container_pod_size(*, cores: int, memory_mib: int) -> PodSize:
    """A container machine's Pod (labs.manifests.make_pod): requests = limits = what the lab states."""
    return PodSize(cores * 1000, memory_mib * MIB, cores * 1000, memory_mib * MIB)
