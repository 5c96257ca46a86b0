"""Errors of the lab lifecycle; each class says which API answer it is (laborchestrator.errors).

Every error carries a `message` for staff and operators (with the cluster's exact words, which may
name internal addresses and client library text) and a `public_message` in plain words for the
student, which never does. Errors a student causes (limits, states) say the same to both. Cluster
errors without a more specific answer are the operator's to fix: 503.
"""

from __future__ import annotations

from laborchestrator import errors


class LabError(errors.ServiceError):
    """Base of everything the lifecycle service raises on purpose."""

    api_code = errors.CLUSTER_UNAVAILABLE


# --- Cluster (raised by labs.cluster, passed through by labs.lifecycle) -----------------------------


class ClusterError(LabError):
    """The cluster refused or could not do what was asked. `status` is the HTTP code, if any."""

    public_default = "The cluster refused the request. Tell your instructor."

    def __init__(self, message: str, *, status: int | None = None, public_message: str = "") -> None:
        super().__init__(message, public_message=public_message)
        self.status = status


class ClusterUnavailable(ClusterError):
    """Unreachable, timing out, answering 5xx/429, or misconfigured (kubeconfig, credentials)."""

    public_default = "The lab service cannot reach the cluster right now. Try again in a minute."


class ClusterForbidden(ClusterError):
    """The application's service account lacks a permission (RBAC): deploy/k8s/rbac.yaml is off."""

    public_default = "The lab service is not allowed to do this in the cluster. Tell your instructor."


class QuotaExceeded(ClusterError):
    """A ResourceQuota refused the object."""

    api_code = errors.LIMIT_REACHED

    public_default = "The cluster's resource limit for this lab was reached. Tell your instructor."


class NamespaceTerminating(ClusterError):
    """Creating inside a namespace that is being deleted."""

    public_default = "An earlier copy of this lab is still being deleted. Try again in a minute."


class ClusterInvalid(ClusterError):
    """The cluster rejected an object as invalid (422/400): a bug or a lab the cluster cannot run."""

    public_default = "The cluster cannot run this lab's machines as they are defined. Tell your instructor."


class ClusterNotFound(ClusterError):
    """The object does not exist (404)."""

    public_default = "Part of this lab no longer exists in the cluster."


class ClusterConflict(ClusterError):
    """409: already exists, resourceVersion conflict, or a VMI already (un)paused. `reason` says which."""

    public_default = "The cluster was busy with this lab. Try again."

    def __init__(self, message: str, *, status: int | None = 409, reason: str = "") -> None:
        super().__init__(message, status=status)
        self.reason = reason


class ClusterExpired(ClusterError):
    """410 Gone: a watch's resourceVersion is older than the history the server keeps; list again."""

    public_default = "The cluster's view of this lab is being reloaded."


# --- Domain ------------------------------------------------------------------------------------------


class LabNotAvailable(LabError):
    """The lab cannot be started by this user (not published, or has no machines)."""

    api_code = errors.LAB_NOT_AVAILABLE


class LabMisconfigured(LabError):
    """The lab's definition cannot be turned into cluster objects (e.g. bad cloud-init user data)."""

    api_code = errors.LAB_NOT_AVAILABLE
    public_default = "This lab is not set up correctly, so it cannot start. Tell your instructor."


class InstanceLimitReached(LabError):
    """Starting would exceed a limit; `scope` is "lab" or "user" and `limit` the number allowed."""

    api_code = errors.LIMIT_REACHED

    def __init__(self, message: str, *, scope: str, limit: int) -> None:
        super().__init__(message)
        self.scope = scope
        self.limit = limit


class InvalidTransition(LabError):
    """The instance is not in a state that allows the action (e.g. pausing a stopped instance)."""

    api_code = errors.INVALID_TRANSITION

    def __init__(self, message: str, *, current: str, target: str) -> None:
        super().__init__(message)
        self.current = current
        self.target = target
