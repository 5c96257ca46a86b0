"""Errors of the lab lifecycle, for callers to map (the REST API: 503, 409, 429, 403...).

Every error carries a readable `message`, written for the person who started the lab or for the
operator, never a raw API body.
"""

from __future__ import annotations


class LabError(Exception):
    """Base of everything the lifecycle service raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Cluster (raised by labs.cluster, passed through by labs.lifecycle) -----------------------------


class ClusterError(LabError):
    """The cluster refused or could not do what was asked. `status` is the HTTP code, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterUnavailable(ClusterError):
    """Unreachable, timing out, answering 5xx/429, or misconfigured (kubeconfig, credentials)."""


class ClusterForbidden(ClusterError):
    """The application's service account lacks a permission (RBAC): deploy/k8s/rbac.yaml is off."""


class QuotaExceeded(ClusterError):
    """A ResourceQuota refused the object."""


class NamespaceTerminating(ClusterError):
    """Creating inside a namespace that is being deleted."""


class ClusterInvalid(ClusterError):
    """The cluster rejected an object as invalid (422/400): a bug or a lab the cluster cannot run."""


class ClusterNotFound(ClusterError):
    """The object does not exist (404)."""


class ClusterConflict(ClusterError):
    """409: already exists, resourceVersion conflict, or a VMI already (un)paused. `reason` says which."""

    def __init__(self, message: str, *, status: int | None = 409, reason: str = "") -> None:
        super().__init__(message, status=status)
        self.reason = reason


# --- Domain ------------------------------------------------------------------------------------------


class LabNotAvailable(LabError):
    """The lab cannot be started by this user (not published, or has no machines)."""


class LabMisconfigured(LabError):
    """The lab's definition cannot be turned into cluster objects (e.g. bad cloud-init user data)."""


class InstanceLimitReached(LabError):
    """Starting would exceed a limit; `scope` is "lab" or "user" and `limit` the number allowed."""

    def __init__(self, message: str, *, scope: str, limit: int) -> None:
        super().__init__(message)
        self.scope = scope
        self.limit = limit


class InvalidTransition(LabError):
    """The instance is not in a state that allows the action (e.g. pausing a stopped instance)."""

    def __init__(self, message: str, *, current: str, target: str) -> None:
        super().__init__(message)
        self.current = current
        self.target = target
