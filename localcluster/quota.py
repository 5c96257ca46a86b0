"""ResourceQuota arithmetic: quantities, object counts and the virt-launcher pod of a VMI.

Two kinds of quota apply, as on a real cluster:
- object counts (`count/<plural>[.<group>]`, legacy `secrets`, `services`, `resourcequotas`) are
  checked by the API server when the object itself is created: 403 Forbidden, nothing stored;
- compute (`requests.cpu`, `requests.memory`, `cpu`, `memory`, `limits.*`, `pods`) applies to pods.
  A VMI runs in a virt-launcher pod that virt-controller creates after the VMI exists, so a VMI over
  quota IS created and stays Pending with a `FailedCreate` event.

The launcher pod's containers come from `localcluster.launcher` (KubeVirt's rules); how a pod's
containers add up, and what the quota demands of each, follows Kubernetes (`pod_resources`, `check_pod`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from localcluster.resources import ResourceType

_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$"
)

COMPUTE_KEYS = {
    "cpu": "requests.cpu",
    "memory": "requests.memory",
    "requests.cpu": "requests.cpu",
    "requests.memory": "requests.memory",
    "limits.cpu": "limits.cpu",
    "limits.memory": "limits.memory",
}
POD_COUNT_KEYS = ("pods", "count/pods")
LEGACY_COUNT_KEYS = {"secrets": "secrets", "services": "services", "resourcequotas": "resourcequotas"}


def parse_quantity(value: Any) -> Fraction:
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    if isinstance(value, int | float):
        return Fraction(str(value))
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}"
        )
    number = Fraction(m.group(1))
    if m.group(2):
        return number * Fraction(10) ** int(m.group(2)[1:])
    return number * _SUFFIXES[m.group(3) or ""]


def format_quantity(amount: Fraction, key: str) -> str:
    if "cpu" in key:
        if amount.denominator == 1:
            return str(amount.numerator)
        millis = amount * 1000
        return f"{int(millis) if millis.denominator == 1 else float(millis)}m"
    if "memory" in key or "storage" in key:
        for suffix in ("Gi", "Mi", "Ki"):
            scaled = amount / _SUFFIXES[suffix]
            if scaled.denominator == 1 and scaled != 0:
                return f"{scaled.numerator}{suffix}"
    return str(int(amount)) if amount.denominator == 1 else str(float(amount))


@dataclass
class PodResources:
    requests: dict[str, Fraction] = field(default_factory=dict)
    limits: dict[str, Fraction] = field(default_factory=dict)


class ContainerResources(Protocol):
    """One container of a pod as the quota and the scheduler see it (localcluster.launcher.Container)."""

    name: str
    requests: dict[str, Fraction]
    limits: dict[str, Fraction]
    init: bool
    restartable: bool


def _aggregate(containers: list[ContainerResources], section: str) -> dict[str, Fraction]:
    """A pod's total requests or limits, by the formula of KEP-753 (sidecar containers) that
    k8s.io/component-helpers/resource/helpers.go implements (AggregateContainerRequests/Limits):
    regular containers and sidecars (restartable init containers) run together and add up; each
    other init container runs alone beside the sidecars started before it; the pod needs the
    larger of the two."""
    total: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    sidecars: dict[str, Fraction] = {}

    def add(into: dict[str, Fraction], values: dict[str, Fraction]) -> None:
        for key, value in values.items():
            into[key] = into.get(key, Fraction(0)) + value

    for container in containers:
        values = getattr(container, section)
        if not container.init or container.restartable:
            add(total, values)
        if not container.init:
            continue
        if container.restartable:
            add(sidecars, values)
            running = dict(sidecars)
        else:
            running = dict(sidecars)
            add(running, values)
        for key, value in running.items():
            init_peak[key] = max(init_peak.get(key, Fraction(0)), value)
    for key, value in init_peak.items():
        total[key] = max(total.get(key, Fraction(0)), value)
    return total


def pod_resources(containers: list[ContainerResources]) -> PodResources:
    return PodResources(requests=_aggregate(containers, "requests"), limits=_aggregate(containers, "limits"))


def count_keys(rt: ResourceType) -> list[str]:
    keys = [f"count/{rt.qualified}"]
    if rt.plural in LEGACY_COUNT_KEYS and not rt.group:
        keys.append(LEGACY_COUNT_KEYS[rt.plural])
    return keys


def pod_usage(pods: list[PodResources]) -> dict[str, Fraction]:
    usage: dict[str, Fraction] = {
        "requests.cpu": Fraction(0),
        "requests.memory": Fraction(0),
        "limits.cpu": Fraction(0),
        "limits.memory": Fraction(0),
        "pods": Fraction(len(pods)),
    }
    for pod in pods:
        for res in ("cpu", "memory"):
            usage[f"requests.{res}"] += pod.requests.get(res, Fraction(0))
            usage[f"limits.{res}"] += pod.limits.get(res, Fraction(0))
    return usage


def usage_for_key(key: str, counts: dict[str, int], pods: dict[str, Fraction]) -> Fraction:
    if key in COMPUTE_KEYS:
        return pods[COMPUTE_KEYS[key]]
    if key in POD_COUNT_KEYS:
        return pods["pods"]
    return Fraction(counts.get(key, 0))


def used_status(hard: dict[str, Any], counts: dict[str, int], pods: list[PodResources]) -> dict[str, str]:
    usage = pod_usage(pods)
    return {key: format_quantity(usage_for_key(key, counts, usage), key) for key in hard}


def exceeded_message(
    quota_name: str, hard: dict[str, Any], used: dict[str, Fraction], requested: dict[str, Fraction]
) -> str | None:
    """`exceeded quota: q, requested: k=v, used: k=v, limited: k=v` or None when everything fits."""
    over = []
    for key in sorted(requested):
        if key not in hard or requested[key] == 0:
            continue
        limit = parse_quantity(hard[key])
        if used.get(key, Fraction(0)) + requested[key] > limit:
            over.append(key)
    if not over:
        return None

    def join(values: dict[str, Fraction]) -> str:
        return ",".join(f"{k}={format_quantity(values.get(k, Fraction(0)), k)}" for k in over)

    limited = {k: parse_quantity(hard[k]) for k in over}
    return (
        f"exceeded quota: {quota_name}, requested: {join(requested)}, used: {join(used)}, "
        f"limited: {join(limited)}"
    )


def check_pod(
    quota_name: str,
    hard: dict[str, Any],
    pods_in_use: list[PodResources],
    containers: list[ContainerResources],
) -> str | None:
    """Why the quota refuses this pod, or None. Mirrors the ResourceQuota admission plugin
    (pkg/quota/v1/evaluator/core/pods.go): every container, init containers too, must state each
    tracked resource ("must specify ..."), then the pod's total must fit."""
    required = {COMPUTE_KEYS[key] for key in hard if key in COMPUTE_KEYS}
    missing: set[str] = set()
    for container in containers:
        for target in required:
            section, res = target.split(".")
            if res not in (container.requests if section == "requests" else container.limits):
                missing.add(target)
    if missing:
        return f"failed quota: {quota_name}: must specify {','.join(sorted(missing))}"
    pod = pod_resources(containers)
    usage = pod_usage(pods_in_use)
    requested: dict[str, Fraction] = {}
    for key in hard:
        if key in COMPUTE_KEYS:
            section, res = COMPUTE_KEYS[key].split(".")
            requested[key] = (pod.requests if section == "requests" else pod.limits).get(res, Fraction(0))
            usage.setdefault(key, usage[COMPUTE_KEYS[key]])
        elif key in POD_COUNT_KEYS:
            requested[key] = Fraction(1)
            usage.setdefault(key, usage["pods"])
    return exceeded_message(quota_name, hard, usage, requested)
