"""Why a machine does not run, read from its VMI's status: the cluster's own reason and message for
staff, plain words for the student, and whether waiting can help.

How a real cluster reports each case on the VMI (KubeVirt's pkg/virt-controller/watch/vmi/lifecycle.go
and pkg/virt-handler/vm.go; the local cluster reproduces them, tests/localcluster/test_launcher_pod.py):

- the launcher pod refused by the namespace's quota: phase Pending, `Synchronized=False`, reason
  `FailedCreate`, "failed to create virtual machine pod: ... exceeded quota: ..." (room may appear);
- any other refusal of the pod (PodSecurity, a manifest KubeVirt cannot render): `FailedCreate` too;
- the pod fits no node: phase Scheduling, `PodScheduled=False`, reason `Unschedulable`, "0/3 nodes are
  available: 3 Insufficient memory. ...";
- the containerDisk image cannot be pulled: phase Scheduling, `Synchronized=False`, reason
  `ErrImagePull` or `ImagePullBackOff` with the kubelet's message;
- QEMU cannot start the guest: phase Scheduled, `Synchronized=False`, reason "Synchronizing with the
  Domain failed.", message `server error. command SyncVMI failed: "..."`;
- the guest ended: phase Failed (or Succeeded), the reason in `status.reason` or the Ready condition.

While the images are pulled, a real cluster says nothing on the VMI (the kubelet's only word is
the launcher pod's "Pulling" event); the local cluster adds a `Ready=False` condition, reason
`Pulling`, message `pulling 35 % of image "..." (...)`, which `pull_progress` reads.

Nothing here calls the cluster or the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
SYNC_FAILED_REASON = "Synchronizing with the Domain failed."

# Our codes (stable, for API clients) and the plain words a student reads for each.
IMAGE_UNAVAILABLE = "image_unavailable"
NO_ROOM = "no_room"
WAITING_FOR_QUOTA = "waiting_for_quota"
REFUSED = "refused"
START_FAILED = "start_failed"
STOPPED = "stopped"
NOT_READY = "not_ready"
RESTARTING = "restarting"

PLAIN_WORDS = {
    IMAGE_UNAVAILABLE: "The machine {machine} cannot start: its disk image could not be downloaded. "
    "Tell your instructor.",
    NO_ROOM: "The machine {machine} cannot start: the cluster has no room for it right now (not enough "
    "free memory or processors). Try again later, or tell your instructor if it keeps happening.",
    WAITING_FOR_QUOTA: "The machine {machine} is waiting for room in this lab's resources; it starts as "
    "soon as there is.",
    REFUSED: "The cluster refused to create the machine {machine}. Tell your instructor.",
    START_FAILED: "The machine {machine} could not be started. Tell your instructor.",
    STOPPED: "The machine {machine} stopped unexpectedly.",
    NOT_READY: "The machine {machine} is waiting: the cluster has not started it yet.",
    RESTARTING: "The machine {machine} stopped and is being restarted. Tell your instructor if it keeps "
    "happening.",
}
# Container machines (Pods): the kubelet's waiting reasons that waiting cannot cure.
CONTAINER_CONFIG_REASONS = frozenset(
    {"CreateContainerError", "CreateContainerConfigError", "RunContainerError", "InvalidImageName"}
)


@dataclass(frozen=True)
class MachineProblem:
    code: str  # one of PLAIN_WORDS' keys
    fatal: bool  # True: waiting cannot help, the start has failed
    cluster_reason: str
    cluster_message: str

    def plain(self, machine: str) -> str:
        return PLAIN_WORDS[self.code].format(machine=machine)

    def detail(self, machine: str) -> str:
        """For staff: the cluster's exact reason and message."""
        message = f": {self.cluster_message}" if self.cluster_message else ""
        return f"Machine {machine}: {self.cluster_reason}{message}"


def _false_condition(conditions: dict[str, dict[str, Any]], kind: str) -> dict[str, Any] | None:
    condition = conditions.get(kind)
    return condition if condition is not None and condition.get("status") == "False" else None


def machine_problem(status: dict[str, Any]) -> MachineProblem | None:
    """What keeps the VMI with this `status` from running, if anything."""
    phase = status.get("phase") or ""
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    synchronized = _false_condition(conditions, "Synchronized")
    if phase in ("Failed", "Succeeded"):
        ready = conditions.get("Ready") or {}
        reason = status.get("reason") or ready.get("reason") or phase
        message = ready.get("message") or (synchronized or {}).get("message") or f"The VMI is {phase}."
        return MachineProblem(STOPPED, True, reason, message)
    scheduled = _false_condition(conditions, "PodScheduled")
    if scheduled is not None:
        reason = scheduled.get("reason") or "Unschedulable"
        return MachineProblem(NO_ROOM, True, reason, scheduled.get("message") or "")
    if synchronized is None or phase == "Running":
        return None
    reason, message = synchronized.get("reason") or "", synchronized.get("message") or ""
    if reason in IMAGE_PULL_REASONS:
        return MachineProblem(IMAGE_UNAVAILABLE, True, reason, message)
    if reason == "FailedCreate" and "exceeded quota" in message:
        return MachineProblem(WAITING_FOR_QUOTA, False, reason, message)
    if reason.startswith("FailedCreate"):
        return MachineProblem(REFUSED, True, reason, message)
    if reason == SYNC_FAILED_REASON:
        return MachineProblem(START_FAILED, True, reason, message)
    return MachineProblem(NOT_READY, False, reason, message)


def _termination(terminated: dict[str, Any]) -> str:
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    message = f": {terminated['message']}" if terminated.get("message") else ""
    return f"exit code {code} ({reason}){message}" if reason else f"exit code {code}{message}"


def pod_problem(status: dict[str, Any]) -> MachineProblem | None:
    """What keeps a container machine's Pod from running, read from its containers' states
    (core/v1 ContainerStatus, as the kubelet writes them; the local cluster reproduces them,
    tests/localcluster_containers/test_containers.py):

    - the image cannot be pulled: waiting `ErrImagePull`/`ImagePullBackOff` with the kubelet's message;
    - the command does not exist (containerd's StartError, exit code 128) or the container cannot be
      created (`CreateContainerError`, e.g. no runtime): fatal, waiting will not help;
    - the command ended and the container restarts (`CrashLoopBackOff`): not fatal, the last exit
      code and reason (`Error`, `OOMKilled`) shown;
    - the Pod ended (phase Failed/Succeeded): stopped.
    """
    phase = status.get("phase") or ""
    statuses = status.get("containerStatuses") or []
    for container in statuses:
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        waiting = state.get("waiting")
        if waiting:
            reason, message = waiting.get("reason") or "", waiting.get("message") or ""
            if reason in IMAGE_PULL_REASONS:
                return MachineProblem(IMAGE_UNAVAILABLE, True, reason, message)
            if reason in CONTAINER_CONFIG_REASONS or last.get("reason") == "StartError":
                detail = _termination(last) if last.get("reason") == "StartError" else message
                return MachineProblem(START_FAILED, True, last.get("reason") or reason, detail)
            if reason == "CrashLoopBackOff":
                return MachineProblem(RESTARTING, False, reason, f"last {_termination(last)}; {message}")
            return MachineProblem(NOT_READY, False, reason or "ContainerCreating", message)
        terminated = state.get("terminated")
        if terminated:
            fatal_reason = "StartError" if terminated.get("reason") == "StartError" else "Terminated"
            code = START_FAILED if fatal_reason == "StartError" else STOPPED
            return MachineProblem(
                code, True, terminated.get("reason") or fatal_reason, _termination(terminated)
            )
    if phase in ("Failed", "Succeeded"):
        return MachineProblem(STOPPED, True, phase, status.get("message") or f"The Pod is {phase}.")
    if not statuses and phase == "Pending":
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
        scheduled = _false_condition(conditions, "PodScheduled")
        if scheduled is not None:
            return MachineProblem(
                NO_ROOM, True, scheduled.get("reason") or "Unschedulable", scheduled.get("message") or ""
            )
        return MachineProblem(NOT_READY, False, "Pending", "")
    return None


PULLING_REASON = "Pulling"
_PERCENT = re.compile(r"^pulling (\d{1,3}) %")


@dataclass(frozen=True)
class PullProgress:
    percent: int
    cluster_message: str  # names the image and its registry: for staff

    def plain(self) -> str:
        return f"Downloading its disk image: {self.percent} %."


def pull_progress(status: dict[str, Any]) -> PullProgress | None:
    """How far the pull of the VMI's images is, if the cluster reports it (the local cluster does)."""
    if status.get("phase") == "Running":
        return None
    ready = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {}
    )
    if ready.get("status") != "False" or ready.get("reason") != PULLING_REASON:
        return None
    message = str(ready.get("message") or "")
    match = _PERCENT.match(message)
    return PullProgress(min(100, int(match[1])), message) if match else None
