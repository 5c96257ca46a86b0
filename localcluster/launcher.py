"""The virt-launcher pod virt-controller would create for a VMI: its containers and their resources.

Only what ResourceQuota admission and the scheduler look at (cpu and memory requests and limits, per
container) is rendered. Each rule follows a KubeVirt source file (checked out at
/work/.mirror/kubevirt+kubevirt):

- the compute container: `pkg/virt-controller/services/renderresources.go` (memory requests from
  the guest, CPU requests from cpuAllocationRatio, CPU pinning, auto limits when a quota in the
  namespace has `limits.*`) and `pkg/virt-controller/services/template.go` (`renderLaunchManifest`,
  `VMIResourcePredicates`, `doesVMIRequireAuto*Limits`);
- the memory overhead: `pkg/hypervisor/kvm/hypervisorbackend.go` (`GetMemoryOverhead`);
- the containerDisk containers and their `-init` twins: `pkg/container-disk/container-disk.go`
  (`getMinimalInitContainerDiskResources`), the `container-disk-binary` init container:
  `renderresources.go` (`initContainerResourceRequirementsForVMI`);
- the `guest-console-log` sidecar: `pkg/virt-controller/services/serialconsolelog.go`;
- `WantsToHaveQOSGuaranteed` / `IsCPUDedicated`: `staging/src/kubevirt.io/api/core/v1/types.go`.

The cluster's KubeVirt configuration (the KubeVirt CR's `spec.configuration`) is `KubeVirtConfig`.
The app sizes its quota with its own code (labs/launcher_sizing.py); this one exists to catch it out.
Not modelled: hugepages, hook sidecars, the ImageVolume feature gate, network binding plugins.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from localcluster.quota import parse_quantity

Mi = 2**20
# GetMemoryOverhead's fixed part: virt-launcher-monitor 25Mi, virt-launcher 100Mi, virtlogd 25Mi,
# virtqemud 40Mi, QEMU 50Mi.
FIXED_OVERHEAD = (25 + 100 + 25 + 40 + 50) * Mi
PER_VCPU_OVERHEAD = 8 * Mi
IOTHREAD_OVERHEAD = 8 * Mi
VIDEO_OVERHEAD = 32 * Mi
GUARANTEED_OVERHEAD = 100 * Mi
VFIO_OVERHEAD = 2**30
TPM_OVERHEAD = 53 * Mi
SEV_OVERHEAD = 256 * Mi
PROBE_OVERHEAD, PROBES_OVERHEAD = 10 * Mi, 100 * Mi

DEFAULT_CPU_ALLOCATION_RATIO = 10
DEFAULT_MEMORY_LIMITS_RATIO = 2.0  # template.go DefaultMemoryLimitOverheadRatio
AUTO_MEMORY_LIMITS_RATIO_LABEL = "alpha.kubevirt.io/auto-memory-limits-ratio"

# Support container types of spec.configuration.supportContainerResources (types.go).
CONTAINER_DISK = "container-disk"
GUEST_CONSOLE_LOG = "guest-console-log"

Resources = dict[str, Fraction]


def _q(text: str) -> Fraction:
    return parse_quantity(text)


@dataclass(frozen=True)
class KubeVirtConfig:
    """The parts of the KubeVirt CR's `spec.configuration` that size a launcher pod."""

    cpu_allocation_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO
    memory_overcommit: int = 100
    additional_guest_memory_overhead_ratio: str | None = None
    # type -> {"requests": {...}, "limits": {...}}; a zero quantity means "not set" upstream.
    support_container_resources: dict[str, dict[str, Resources]] = field(default_factory=dict)
    serial_console_log_disabled: bool = False

    @classmethod
    def from_configuration(cls, configuration: dict[str, Any]) -> KubeVirtConfig:
        """From a KubeVirt CR's `spec.configuration` (the same YAML an operator writes)."""
        developer = configuration.get("developerConfiguration") or {}
        support: dict[str, dict[str, Resources]] = {}
        for entry in configuration.get("supportContainerResources") or []:
            resources = entry.get("resources") or {}
            support[str(entry["type"])] = {
                section: {k: parse_quantity(v) for k, v in (resources.get(section) or {}).items()}
                for section in ("requests", "limits")
            }
        ratio = configuration.get("additionalGuestMemoryOverheadRatio")
        if ratio is not None:
            float(ratio)  # the upstream webhook refuses a ratio that is not a number
        return cls(
            cpu_allocation_ratio=int(developer.get("cpuAllocationRatio") or DEFAULT_CPU_ALLOCATION_RATIO),
            memory_overcommit=int(developer.get("memoryOvercommit") or 100),
            additional_guest_memory_overhead_ratio=None if ratio is None else str(ratio),
            support_container_resources=support,
            serial_console_log_disabled=(configuration.get("virtualMachineOptions") or {}).get(
                "disableSerialConsoleLog"
            )
            is not None,
        )

    def support_override(self, kind: str, section: str, resource: str) -> Fraction | None:
        value = self.support_container_resources.get(kind, {}).get(section, {}).get(resource)
        return value if value else None


@dataclass
class Container:
    name: str
    requests: Resources
    limits: Resources
    init: bool = False
    restartable: bool = False  # an init container with restartPolicy Always: a sidecar


@dataclass
class LauncherPod:
    name: str
    containers: list[Container]
    guaranteed_requested: bool  # WantsToHaveQOSGuaranteed or dedicated CPUs


@dataclass(frozen=True)
class NamespaceContext:
    """What virt-controller reads from the namespace: its quotas' keys and its labels."""

    quota_keys: frozenset[str] = frozenset()
    labels: dict[str, str] = field(default_factory=dict)


# -- helpers over the VMI spec ----------------------------------------------------------------------


def _quantity(resources: dict[str, Any], name: str) -> Fraction:
    value = resources.get(name)
    return parse_quantity(value) if value is not None else Fraction(0)


def _resources(spec: dict[str, Any], section: str) -> dict[str, Any]:
    return ((spec.get("domain") or {}).get("resources") or {}).get(section) or {}


def vcpus(spec: dict[str, Any]) -> int:
    """hardware.GetNumberOfVCPUs, or 1 without a CPU topology (the webhook sets one upstream)."""
    cpu = spec["domain"].get("cpu")
    if cpu is None:
        return 1
    count = 0
    for key in ("cores", "sockets", "threads"):
        value = int(cpu.get(key) or 0)
        if value:
            count = value if count == 0 else count * value
    return count


def is_cpu_dedicated(spec: dict[str, Any]) -> bool:
    return bool((spec["domain"].get("cpu") or {}).get("dedicatedCpuPlacement"))


def wants_guaranteed_qos(spec: dict[str, Any]) -> bool:
    """types.go WantsToHaveQOSGuaranteed: memory and CPU requests equal their limits."""
    requests, limits = _resources(spec, "requests"), _resources(spec, "limits")
    request_memory, limit_memory = _quantity(requests, "memory"), _quantity(limits, "memory")
    request_cpu, limit_cpu = _quantity(requests, "cpu"), _quantity(limits, "cpu")
    memory_wants = (request_memory == 0 and limit_memory != 0) or (
        request_memory != 0 and request_memory == limit_memory
    )
    cpu_wants = request_cpu != 0 and request_cpu == limit_cpu
    return memory_wants and cpu_wants


def _go_int_value(amount: Fraction) -> int:
    """resource.Quantity.Value(): rounded up to an integer."""
    return math.ceil(amount)


def _kilo(amount: Fraction) -> int:
    """resource.Quantity.ScaledValue(resource.Kilo): thousands, rounded up."""
    return math.ceil(amount / 1000)


def memory_overhead(spec: dict[str, Any], config: KubeVirtConfig) -> Fraction:
    """hypervisorbackend.go GetMemoryOverhead, in bytes."""
    domain = spec["domain"]
    devices = domain.get("devices") or {}
    request_memory = _quantity(_resources(spec, "requests"), "memory")
    # Page tables: the request in whole kB, back to bytes, divided by 512 (integer division).
    overhead = Fraction((_kilo(request_memory) * 1000) // 512)
    overhead += FIXED_OVERHEAD
    count = vcpus(spec) if domain.get("cpu") is not None else 0
    if domain.get("cpu") is None:
        limits, requests = _resources(spec, "limits"), _resources(spec, "requests")
        if "cpu" in limits:
            count = _go_int_value(_quantity(limits, "cpu"))
        elif "cpu" in requests:
            count = _go_int_value(_quantity(requests, "cpu"))
    overhead += PER_VCPU_OVERHEAD * max(count, 1)
    overhead += IOTHREAD_OVERHEAD
    if devices.get("autoattachGraphicsDevice", True) is not False:
        overhead += VIDEO_OVERHEAD
    if devices.get("gpus") or devices.get("hostDevices"):
        overhead += VFIO_OVERHEAD
    if any("downwardMetrics" in volume for volume in spec.get("volumes") or []):
        overhead += Mi
    liveness = ((spec.get("livenessProbe") or {}).get("exec")) is not None
    readiness = ((spec.get("readinessProbe") or {}).get("exec")) is not None
    overhead += PROBE_OVERHEAD * (int(liveness) + int(readiness))
    if liveness or readiness:
        overhead += PROBES_OVERHEAD
    if (domain.get("launchSecurity") or {}).get("sev") is not None:
        overhead += SEV_OVERHEAD
    tpm = devices.get("tpm")
    if tpm is not None and tpm.get("enabled", True) is not False:
        overhead += TPM_OVERHEAD
    if is_cpu_dedicated(spec) or wants_guaranteed_qos(spec):
        overhead += GUARANTEED_OVERHEAD
    added = ((domain.get("memory") or {}).get("reservedOverhead") or {}).get("addedOverhead")
    if added is not None:
        overhead += parse_quantity(added)
    ratio = config.additional_guest_memory_overhead_ratio
    if ratio:
        # MultiplyMemory: the extra part in whole kB (float, truncated), added to the overhead.
        overhead += int(float(_kilo(overhead)) * (float(ratio) - 1.0)) * 1000
    return overhead


def _go_cpu_share(total: int, ratio: int) -> Fraction:
    """WithoutDedicatedCPU's request: float64(total)/ratio printed with %g (millicores below 1),
    then parsed as a Quantity, which rounds anything finer than a nanocore up."""
    value = total / ratio
    amount = parse_quantity(f"{value * 1000!r}m" if value < 1 else repr(value))
    return Fraction(math.ceil(amount * 10**9), 10**9)


# -- the containers ------------------------------------------------------------------------------------


def _compute(spec: dict[str, Any], config: KubeVirtConfig, namespace: NamespaceContext) -> Container:
    """renderresources.go's ResourceRenderer with the rules VMIResourcePredicates applies."""
    domain = spec["domain"]
    vm_requests = _cpu_and_memory(_resources(spec, "requests"))
    vm_limits = _cpu_and_memory(_resources(spec, "limits"))
    calculated_requests: Resources = {}
    calculated_limits: Resources = {}
    # WithMemoryRequests (only when the VMI has no memory request).
    if not vm_requests.get("memory"):
        if vm_limits.get("memory"):
            vm_requests["memory"] = vm_limits["memory"]
        else:
            memory = domain.get("memory") or {}
            guest = memory.get("guest") or (memory.get("hugepages") or {}).get("pageSize")
            if guest:
                value = parse_quantity(guest)
                if config.memory_overcommit != 100:
                    value = Fraction(math.ceil(value) * 100 // config.memory_overcommit)
                vm_requests["memory"] = value
    count = vcpus(spec)
    if is_cpu_dedicated(spec):  # WithCPUPinning
        if count:
            vm_limits["cpu"] = vm_requests["cpu"] = Fraction(count)
        if "memory" in vm_requests:
            vm_limits["memory"] = vm_requests["memory"]
    elif count and config.cpu_allocation_ratio > 0:  # WithoutDedicatedCPU
        calculated_requests["cpu"] = _go_cpu_share(count, config.cpu_allocation_ratio)
        if _auto_limits(spec, namespace, "cpu"):
            calculated_limits["cpu"] = Fraction(count)
    overhead = memory_overhead(spec, config)
    # WithMemoryOverhead
    if not (domain.get("resources") or {}).get("overcommitGuestOverhead"):
        vm_requests["memory"] = vm_requests.get("memory", Fraction(0)) + overhead
    if "memory" in vm_limits:
        vm_limits["memory"] += overhead
    if _auto_limits(spec, namespace, "memory"):  # WithAutoMemoryLimits
        ratio = DEFAULT_MEMORY_LIMITS_RATIO
        label = namespace.labels.get(AUTO_MEMORY_LIMITS_RATIO_LABEL)
        with contextlib.suppress(ValueError):
            ratio = float(label) if label is not None and float(label) >= 1.0 else ratio
        calculated_limits["memory"] = Fraction(int(float(_go_int_value(vm_requests["memory"])) * ratio))
    return Container(
        "compute",
        requests={**calculated_requests, **vm_requests},
        limits={**calculated_limits, **vm_limits},
    )


def _cpu_and_memory(resources: dict[str, Any]) -> Resources:
    return {k: parse_quantity(v) for k, v in resources.items() if k in ("cpu", "memory")}


def _auto_limits(spec: dict[str, Any], namespace: NamespaceContext, resource: str) -> bool:
    """doesVMIRequireAutoResourceLimits: a quota in the namespace limits it and the VMI sets none."""
    return resource not in _resources(spec, "limits") and f"limits.{resource}" in namespace.quota_keys


def _support(
    config: KubeVirtConfig,
    kind: str,
    requests: tuple[str, str],
    limits: tuple[str, str],
    guaranteed: bool,
) -> tuple[Resources, Resources]:
    """A support container's (cpu, memory) requests and limits with the configured overrides;
    under Guaranteed QoS (or dedicated CPUs) its requests are raised to its limits."""
    request = {"cpu": _q(requests[0]), "memory": _q(requests[1])}
    limit = {"cpu": _q(limits[0]), "memory": _q(limits[1])}
    for resource in ("cpu", "memory"):
        request[resource] = config.support_override(kind, "requests", resource) or request[resource]
        limit[resource] = config.support_override(kind, "limits", resource) or limit[resource]
    if guaranteed:
        request = dict(limit)
    return request, limit


def _serial_console_log(spec: dict[str, Any], config: KubeVirtConfig) -> bool:
    devices = spec["domain"].get("devices") or {}
    if devices.get("autoattachSerialConsole") is False:
        return False
    if devices.get("logSerialConsole") is not None:
        return bool(devices["logSerialConsole"])
    return not config.serial_console_log_disabled


def launcher_pod(
    vmi: dict[str, Any], config: KubeVirtConfig, namespace: NamespaceContext, pod_name: str
) -> LauncherPod:
    """template.go renderLaunchManifest, reduced to the resources of each container."""
    spec = vmi["spec"]
    guaranteed = is_cpu_dedicated(spec) or wants_guaranteed_qos(spec)
    containers = [_compute(spec, config, namespace)]
    disks = [v for v in spec.get("volumes") or [] if "containerDisk" in v]
    kernel_boot = ((spec["domain"].get("firmware") or {}).get("kernelBoot") or {}).get("container")
    disk_names = [f"volume{v['name']}" for v in disks] + (["kernel-boot"] if kernel_boot else [])
    for name in disk_names:
        requests, limits = _support(config, CONTAINER_DISK, ("1m", "1M"), ("10m", "40M"), guaranteed)
        containers.append(Container(name, requests, limits))
    if _serial_console_log(spec, config):
        requests, limits = _support(config, GUEST_CONSOLE_LOG, ("5m", "35M"), ("15m", "60M"), guaranteed)
        containers.append(Container("guest-console-log", requests, limits, init=True, restartable=True))
    if disk_names:
        if guaranteed:  # initContainerDedicatedCPURequiredResources: only limits are configurable
            requests, limits = _support(config, CONTAINER_DISK, ("10m", "40M"), ("10m", "40M"), True)
        else:
            requests, limits = _support(config, CONTAINER_DISK, ("10m", "1M"), ("100m", "40M"), False)
        containers.append(Container("container-disk-binary", requests, limits, init=True))
        for name in disk_names:
            requests, limits = _support(config, CONTAINER_DISK, ("1m", "1M"), ("10m", "40M"), guaranteed)
            containers.append(Container(f"{name}-init", requests, limits, init=True))
    return LauncherPod(pod_name, containers, guaranteed)
