"""Pods as the API server defaults them and as the kubelet reports their status: pure functions.

- `default_pod`: the v1 defaults (pkg/apis/core/v1/defaults.go: restartPolicy Always, dnsPolicy
  ClusterFirst, terminationGracePeriodSeconds 30, schedulerName, imagePullPolicy by tag,
  terminationMessagePath/Policy; requests default to limits) and the initial status (Pending, the
  QoS class from pkg/apis/core/helper/qos).
- `apply_report`: one container's new state from the runner (localcluster/containers/runner.py)
  merged into `status.containerStatuses`, then the phase and conditions the kubelet derives
  (pkg/kubelet/kubelet_pods.go getPhase, pkg/kubelet/status/generate.go).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from localcluster.quota import parse_quantity

NODE_NAME = "localcluster"
HOST_IP = "10.244.0.1"
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class PodContainer:
    """A pod's container as the quota sees it (localcluster.quota.ContainerResources)."""

    name: str
    requests: dict[str, Fraction] = field(default_factory=dict)
    limits: dict[str, Fraction] = field(default_factory=dict)
    init: bool = False
    restartable: bool = False


def quota_containers(pod: dict[str, Any]) -> list[PodContainer]:
    out = []
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        out.append(
            PodContainer(
                container.get("name", ""),
                {k: parse_quantity(v) for k, v in (resources.get("requests") or {}).items()},
                {k: parse_quantity(v) for k, v in (resources.get("limits") or {}).items()},
            )
        )
    return out


def qos_class(pod: dict[str, Any]) -> str:
    containers = pod["spec"]["containers"]
    guaranteed = True
    any_set = False
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        any_set = any_set or bool(requests) or bool(limits)
        for res in ("cpu", "memory"):
            if res not in limits or parse_quantity(requests.get(res, limits[res])) != parse_quantity(
                limits[res]
            ):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


def default_pod(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    # The ServiceAccount admission plugin: every pod runs as a service account ("default").
    spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
    spec["serviceAccount"] = spec["serviceAccountName"]
    for container in spec.get("containers") or []:
        image = str(container.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        untagged = ":" not in last and "@" not in last
        container.setdefault(
            "imagePullPolicy", "Always" if untagged or last.endswith(":latest") else "IfNotPresent"
        )
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        resources = container.setdefault("resources", {})
        for key, value in (resources.get("limits") or {}).items():
            resources.setdefault("requests", {}).setdefault(key, value)
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}
    return pod


def scheduled_status(pod: dict[str, Any], now: str) -> dict[str, Any]:
    """What the scheduler and the kubelet's first sync write: the node, PodScheduled, waiting containers."""
    status = dict(pod.get("status") or {})
    pod["spec"]["nodeName"] = NODE_NAME
    status.update(hostIP=HOST_IP, hostIPs=[{"ip": HOST_IP}], startTime=now)
    status["containerStatuses"] = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
        for c in pod["spec"]["containers"]
    ]
    status["conditions"] = _conditions(pod, status, now)
    return status


def _phase(pod: dict[str, Any], statuses: list[dict[str, Any]]) -> str:
    """pkg/kubelet/kubelet_pods.go getPhase, for pods without init containers."""
    pending = running = succeeded = failed = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
            else:
                failed += 1
        elif status.get("lastState", {}).get("terminated"):
            running += 1  # waiting to restart
        else:
            pending += 1
    if pending:
        return "Pending"
    if running:
        return "Running"
    if failed:
        return "Failed"
    policy = pod["spec"].get("restartPolicy", "Always")
    return "Running" if policy == "Always" else "Succeeded"


def _condition(kind: str, ok: bool, now: str, old: list[dict[str, Any]], reason: str = "") -> dict[str, Any]:
    previous = next((c for c in old if c.get("type") == kind), None)
    status = "True" if ok else "False"
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    condition = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        condition["reason"] = reason
    return condition


def _conditions(pod: dict[str, Any], status: dict[str, Any], now: str) -> list[dict[str, Any]]:
    old = status.get("conditions") or []
    statuses = status.get("containerStatuses") or []
    not_ready = [s["name"] for s in statuses if not s.get("ready")]
    ready = not not_ready and status.get("phase") != "Pending"
    reason = "PodCompleted" if status.get("phase") in TERMINAL_PHASES else "ContainersNotReady"
    return [
        _condition("PodReadyToStartContainers", bool(status.get("podIP")), now, old),
        _condition("Initialized", True, now, old),
        _condition("Ready", ready, now, old, reason),
        _condition("ContainersReady", ready, now, old, reason),
        _condition("PodScheduled", True, now, old),
    ]


def apply_report(
    pod: dict[str, Any],
    now: str,
    *,
    pod_ip: str | None = None,
    container: str | None = None,
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restart_count: int = 0,
) -> dict[str, Any]:
    """The pod's new status after a report from the runner."""
    status = copy.deepcopy(pod.get("status") or {})
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    statuses = status.setdefault("containerStatuses", [])
    for entry in statuses:
        if container is not None and entry["name"] == container and state is not None:
            entry["state"] = state
            entry["lastState"] = last_state or {}
            entry["restartCount"] = restart_count
            entry["ready"] = "running" in state
            entry["started"] = "running" in state
            if "running" in state or "terminated" in state:
                entry["containerID"] = (state.get("terminated") or {}).get(
                    "containerID", entry.get("containerID", "")
                )
    status["phase"] = _phase(pod, statuses)
    status["conditions"] = _conditions(pod, status, now)
    return status


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES
