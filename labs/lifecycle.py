"""The lab instance lifecycle: the one place that changes `LabInstance.status`.

Every change goes through `_transition`, which checks the table below and writes with a conditional
UPDATE (`... WHERE status = <the status we saw>`), so two processes acting on one instance (a stop
during a start, two reconcilers) never overwrite each other: the loser sees 0 rows and re-reads.
No database transaction is ever open while the cluster is called: the intent is committed first,
then the cluster is called, then the outcome is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import ngettext

from laborchestrator.sealing import Unsealable
from labs import cluster, cluster_profile, manifests, ssh_keys
from labs.exceptions import (
    ClusterError,
    ClusterForbidden,
    ClusterUnavailable,
    InstanceLimitReached,
    InvalidTransition,
    LabMisconfigured,
    LabNotAvailable,
)
from labs.installation import installation_id
from labs.machine_reasons import MachineProblem, PullProgress, machine_problem, pod_problem, pull_progress
from labs.models import InstanceCheckKey, InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from labs.watch_health import watch_health

logger = logging.getLogger(__name__)

Status = LabInstance.Status
PendingAction = LabInstance.PendingAction

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.REQUESTED: frozenset({Status.STARTING, Status.FAILED, Status.STOPPING}),
    Status.STARTING: frozenset({Status.RUNNING, Status.FAILED, Status.STOPPING}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.FAILED, Status.STOPPING}),
    Status.PAUSED: frozenset({Status.RUNNING, Status.FAILED, Status.STOPPING}),
    # A stop cannot fail: it stays `stopping` and is retried until the namespace is gone.
    Status.STOPPING: frozenset({Status.STOPPED, Status.EXPIRED}),
    # Stopping a failed instance removes whatever it left in the cluster.
    Status.FAILED: frozenset({Status.STOPPING}),
    Status.STOPPED: frozenset(),
    Status.EXPIRED: frozenset(),
}
# Statuses in which the instance's machines were created and should exist.
PROVISIONED_STATUSES = (Status.STARTING, Status.RUNNING, Status.PAUSED)
# Statuses after which the machines never run again.
MACHINES_GONE_STATUSES = (Status.STOPPING, Status.STOPPED, Status.FAILED, Status.EXPIRED)

# Letters and digits without look-alikes (0/O, 1/l/I): students type these into a VM console.
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
PASSWORD_LENGTH = 16
ACTIVITY_WRITE_INTERVAL = timedelta(minutes=1)
# How long a resume waits for the cluster to confirm the pause before it (or the reverse), before
# it is refused: virt-handler usually confirms within a second.
OPPOSITE_ACTION_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class MachineStatus:
    name: str
    phase: str  # the VMI's status.phase ("" before it exists or once the instance is gone)
    ip_address: str
    paused: bool
    ready: bool
    problem: MachineProblem | None = None  # why it does not run (yet), from the VMI's conditions
    kind: str = "vm"  # or "container": a Pod, which keeps running while the instance is paused
    pull: PullProgress | None = None  # its images being downloaded, where the cluster says so


@dataclass(frozen=True)
class InstanceStatus:
    status: str
    machines: list[MachineStatus]
    last_error: str = ""  # the cluster's words, for staff
    last_error_plain: str = ""  # the same in plain words, for the student


@dataclass
class ReconcileReport:
    orphans_deleted: list[str] = field(default_factory=list)
    # Managed namespaces without an installation label (made before there was one): never deleted.
    unlabelled: list[str] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    refreshed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- Transitions -------------------------------------------------------------------------------------


def _transition(instance: LabInstance, target: str, *, only_if: Q | None = None, **fields: Any) -> bool:
    """Move the instance from the status it was read with to `target`; False if someone else moved it.

    `only_if` adds a condition the row must still meet (e.g. a lease that must still be expired).
    Raises InvalidTransition if the table does not allow it. On False the instance is re-read.
    """
    current = instance.status
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(
            f"A {Status(current).label.lower()} instance cannot become {Status(target).label.lower()}.",
            current=current,
            target=target,
        )
    rows = LabInstance.objects.filter(pk=instance.pk, status=current)
    if only_if is not None:
        rows = rows.filter(only_if)
    updated = rows.update(status=target, **fields)
    if updated:
        instance.status = target
        for name, value in fields.items():
            setattr(instance, name, value)
        if target in MACHINES_GONE_STATUSES:
            # Its machines are gone (or going): the key that logged in to them has nothing left to open.
            InstanceCheckKey.objects.filter(instance=instance).delete()
        return True
    instance.refresh_from_db()
    return False


def _fail(instance: LabInstance, message: str, plain: str = "", *, only_if: Q | None = None) -> bool:
    """Mark the instance failed: `message` for staff (the cluster's exact words), `plain` for the
    student (no cluster details; the same as `message` when that has none). `only_if`: a condition
    the row must still meet (see `_transition`)."""
    if Status.FAILED not in ALLOWED_TRANSITIONS[instance.status]:
        return False
    failed = _transition(
        instance,
        Status.FAILED,
        only_if=only_if,
        last_error=message[:2000],
        last_error_plain=(plain or message)[:2000],
    )
    if failed:
        logger.warning("Instance %s failed: %s", instance.pk, message)
    return failed


# --- Start leases ----------------------------------------------------------------------------------


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.LABS_START_LEASE_SECONDS)


class _StartLease:
    """Renews a `requested` instance's start lease while this process drives its start.

    A thread renews every third of LABS_START_LEASE_SECONDS, so a start slowed by the cluster (a call
    may take KUBE_REQUEST_TIMEOUT, a rollback waits for its namespace) keeps its lease, and a start
    whose process was killed loses it within one lease. The thread has its own database connection;
    a renewal that fails (database busy) is retried at the next beat.
    """

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"start-lease-{instance_id}", daemon=True)

    def __enter__(self) -> _StartLease:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Not joined: a renewal stuck on a busy database must not hold up the answer, and one that
        # lands after the start finished changes nothing (it only touches `requested` rows).
        self.stopped.set()

    def _renew(self) -> None:
        interval = settings.LABS_START_LEASE_SECONDS / 3
        try:
            while not self.stopped.wait(interval):
                try:
                    LabInstance.objects.filter(pk=self.instance_id, status=Status.REQUESTED).update(
                        start_lease_until=_lease_end()
                    )
                except DatabaseError as error:
                    logger.info("Renewing the start lease of instance %s: %s", self.instance_id, error)
        finally:
            connection.close()


def _start_abandoned(instance: LabInstance, now: datetime) -> bool:
    """Whether no live process drives this `requested` instance's start any more."""
    if instance.start_lease_until is not None:
        return instance.start_lease_until <= now
    return instance.created_at + timedelta(seconds=settings.LABS_START_TIMEOUT_SECONDS) <= now


def _abandon_start(instance: LabInstance, now: datetime) -> bool:
    """Fail a start whose process is gone and delete what it created; False if it was not ours to.

    The claim is conditional on the lease still being expired, so a start that renewed meanwhile is
    left alone. Raises ClusterError if the namespace cannot be deleted (the instance is failed by
    then, so reconcile deletes the namespace as an orphan).
    """
    expired = Q(start_lease_until__lte=now) | Q(start_lease_until__isnull=True)
    if not _fail(instance, "The start was interrupted.", only_if=expired):
        return False
    cluster.delete_namespace(instance.namespace)
    return True


def _abandon_stale_starts(user: Any) -> None:
    """Free the user's slots held by starts whose process died, before their limits are checked."""
    now = timezone.now()
    for instance in LabInstance.objects.filter(owner=user, status=Status.REQUESTED):
        if _start_abandoned(instance, now):
            try:
                _abandon_start(instance, now)
            except ClusterError as error:  # failed all the same: reconcile deletes the orphan namespace
                logger.warning("Deleting interrupted start %s's namespace: %s", instance.pk, error.message)


# --- Start -------------------------------------------------------------------------------------------


def _generate_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _check_startable(*, user: Any, lab: Lab, machines: list[LabMachine]) -> None:
    if not (lab.published or user.is_staff):
        raise LabNotAvailable(f"The lab {lab.name!r} is not published.")
    if not machines:
        raise LabNotAvailable(f"The lab {lab.name!r} has no machines.")
    for machine in machines:
        # Validated when saved since the loader refuses what the start cannot use; rows saved before
        # (or behind the model's back) are refused here, before anything is created.
        try:
            manifests.load_extra_user_data(machine.cloud_init_user_data)
        except ValueError as error:
            raise LabMisconfigured(
                f"The cloud-init user data of machine {machine.name!r} is not valid: {error}"
            ) from error


def _check_limits(*, user: Any, lab: Lab) -> None:
    mine = LabInstance.objects.active().filter(owner=user)
    if mine.filter(lab=lab).count() >= lab.instances_per_user:
        raise InstanceLimitReached(
            ngettext(
                "You may run %(count)d instance of %(lab)r at a time; stop it before starting another.",
                "You may run %(count)d instances of %(lab)r at a time; stop one before starting another.",
                lab.instances_per_user,
            )
            % {"count": lab.instances_per_user, "lab": lab.name},
            scope="lab",
            limit=lab.instances_per_user,
        )
    limit = settings.LABS_MAX_INSTANCES_PER_USER
    if not user.is_staff and mine.count() >= limit:
        raise InstanceLimitReached(
            ngettext(
                "You may run %(count)d lab instance at a time across all labs; stop it first.",
                "You may run %(count)d lab instances at a time across all labs; stop one first.",
                limit,
            )
            % {"count": limit},
            scope="user",
            limit=limit,
        )


@dataclass(frozen=True)
class _Secrets:
    """Generated for a start: each machine's password and SSH host key (None without an SSH server),
    and the instance's check key pair. Host private keys only ever go into the cluster's Secrets."""

    passwords: list[str]
    host_keys: list[ssh_keys.KeyPair | None]
    check_key: ssh_keys.KeyPair

    @classmethod
    def generate(cls, machines: list[LabMachine]) -> _Secrets:
        return cls(
            passwords=[_generate_password() for _ in machines],
            host_keys=[
                ssh_keys.new_key_pair(f"{m.name}-host")
                if m.image is not None and m.image.has_ssh_server
                else None
                for m in machines
            ],
            check_key=ssh_keys.new_key_pair(manifests.CHECK_USER),
        )


def _machine_kind_fields(machine: LabMachine) -> dict[str, Any]:
    """What the instance's copy of a machine takes from its kind: a VM's image, or a container's."""
    if machine.is_container:
        return {
            "kind": machine.kind,
            "image_reference": machine.container_image,
            "username": machine.shell_user,
            "has_vnc": False,
            "has_serial_console": False,
            # JSON fields a form left empty hold null.
            "command": list(machine.command or []),
            "args": list(machine.args or []),
            "env": dict(machine.env or {}),
            "ports": list(machine.ports or []),
        }
    assert machine.image is not None  # LabMachine.clean: a VM has an image
    return {
        "kind": machine.kind,
        "image_reference": machine.image.container_disk_image,
        "username": machine.image.default_username,
        "has_vnc": machine.image.has_vnc,
        "has_serial_console": machine.image.has_serial_console,
    }


def _reserve(
    *, user: Any, lab: Lab, machines: list[LabMachine], generated: _Secrets, pooled: bool = False
) -> LabInstance:
    """Check the limits and record the instance, atomically per user.

    The user's row is locked (SELECT ... FOR UPDATE), so two concurrent starts by one user run this
    one after the other and the second sees the first's instance: no check-then-act race. A pool
    instance is bounded by its lab's pool size instead (`pool_refill`), not by a student's limits.
    """
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if not pooled:
            _check_limits(user=user, lab=lab)
        instance = LabInstance.objects.create(
            lab=lab, owner=user, status=Status.REQUESTED, start_lease_until=_lease_end(), pooled=pooled
        )
        instance.namespace = manifests.namespace_name(prefix=lab.namespace_prefix, instance_id=instance.pk)
        instance.save(update_fields=["namespace"])
        InstanceMachine.objects.bulk_create(
            InstanceMachine(
                instance=instance,
                name=machine.name,
                cores=machine.cores,
                memory_mib=machine.memory_mib,
                password=password,
                has_ssh_server=host_key is not None,
                ssh_host_public_key=host_key.public_key if host_key is not None else "",
                order=machine.order,
                opens_first=machine.opens_first,
                **_machine_kind_fields(machine),
            )
            for machine, password, host_key in zip(
                machines, generated.passwords, generated.host_keys, strict=True
            )
        )
        InstanceCheckKey.objects.create(
            instance=instance,
            private_key=generated.check_key.private_key,
            public_key=generated.check_key.public_key,
        )
    return instance


def _profile() -> manifests.ClusterProfile:
    """The cluster profile from settings; a wrong setting is the cluster connection's misconfiguration."""
    try:
        return cluster_profile.cluster_profile()
    except cluster_profile.ClusterProfileInvalid as error:
        raise ClusterUnavailable(f"The cluster settings are invalid: {error}") from error


def _check_access(generated: _Secrets, index: int) -> manifests.CheckAccess | None:
    host_key = generated.host_keys[index]
    if host_key is None:
        return None
    return manifests.CheckAccess(
        authorized_key=generated.check_key.public_key,
        host_private_key=host_key.private_key,
        host_public_key=host_key.public_key,
    )


def _pull_credentials(image: VMImage | None, reference: str) -> dict[str, Any] | None:
    """The image's registry credentials, if it has them and the machine still runs that image
    (container machines have no VM image)."""
    if image is None or image.container_disk_image != reference:
        return None
    try:
        return image.pull_credentials()
    except Unsealable:
        # SECRET_KEY changed since it was saved: the pull goes anonymous and fails with the
        # registry's "unauthorized", which staff see on the instance; the admin asks for it again.
        logger.warning("VM image %s: its registry password cannot be unsealed; enter it again", image.name)
        return None


def _kernel_boot(image: VMImage | None, reference: str) -> manifests.KernelBoot | None:
    if image is None or not image.is_kernel_boot or image.container_disk_image != reference:
        return None
    return manifests.KernelBoot(image.kernel_path, image.initrd_path, image.kernel_args)


def _instance_manifests(
    instance: LabInstance,
    machines: list[LabMachine],
    profile: manifests.ClusterProfile,
    generated: _Secrets,
) -> manifests.InstanceManifests:
    by_name = {m.name: m for m in machines}
    index = {m.name: i for i, m in enumerate(machines)}
    specs = [
        manifests.MachineSpec(
            name=m.name,
            image_reference=m.image_reference,
            cores=m.cores,
            memory_mib=m.memory_mib,
            username=m.username,
            password=m.password,
            has_vnc=m.has_vnc,
            has_serial_console=m.has_serial_console,
            extra_user_data=by_name[m.name].cloud_init_user_data,
            check_access=_check_access(generated, index[m.name]),
            kind=m.kind,
            command=tuple(m.command or ()),
            args=tuple(m.args or ()),
            env=tuple(sorted((m.env or {}).items())),
            ports=tuple(m.ports or ()),
            pull_credentials=_pull_credentials(by_name[m.name].image, m.image_reference),
            kernel_boot=_kernel_boot(by_name[m.name].image, m.image_reference),
        )
        for m in instance.machines.all()
    ]
    return manifests.make_instance_manifests(
        installation_id=installation_id(),
        namespace=instance.namespace,
        instance_id=instance.pk,
        lab_slug=instance.lab.slug,
        owner_id=instance.owner_id,
        machines=specs,
        sizing=cluster_profile.kubevirt_sizing_from_settings(),
        profile=profile,
    )


def _create_in_cluster(instance: LabInstance, objects: manifests.InstanceManifests) -> None:
    """Namespace first; then the RoleBinding that gives the app its rights inside it; then its
    policy, quota and secrets together; then every VMI together.

    Four round trips whatever the number of machines. The quota and the isolation policy exist
    before any VMI, so no machine ever runs unconstrained.
    """
    if not cluster.create_namespace(objects.namespace):
        # Ours only if this installation made it for this instance (a retried create): another
        # installation's instance with the same id and lab prefix has the same namespace name.
        existing = cluster.read_namespace(instance.namespace)
        labels = existing.labels if existing else {}
        ours = manifests.belongs_to(
            labels,
            installation_id=objects.namespace["metadata"]["labels"][manifests.INSTALLATION_LABEL],
            instance_id=instance.pk,
        )
        if not ours:
            raise _ForeignNamespace(_foreign_namespace_message(instance.namespace, labels))
    cluster.create_objects([objects.role_binding])
    _create_once_bound([objects.network_policy, objects.resource_quota, objects.service, *objects.secrets])
    cluster.create_objects([*objects.vmis, *objects.pods])


def _create_once_bound(objects: list[dict[str, Any]]) -> None:
    """The first creates in a namespace after its RoleBinding, retried while they are forbidden.

    The API server's authorizer learns of a new binding through a watch, so it may refuse for a
    moment after the create (Kubernetes' own e2e tests wait up to 5 s for that). A refusal that
    lasts LABS_RBAC_PROPAGATION_SECONDS is a real one. Creates are idempotent, so a retry is safe.
    """
    deadline = time.monotonic() + settings.LABS_RBAC_PROPAGATION_SECONDS
    pause = 0.05
    while True:
        try:
            cluster.create_objects(objects)
            return
        except ClusterForbidden:
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class _ForeignNamespace(ClusterError):
    """Someone else's namespace has our name: never delete it."""

    public_default = "This lab's place in the cluster is taken by something else. Tell your instructor."


def _foreign_namespace_message(namespace: str, labels: dict[str, str]) -> str:
    if labels.get(manifests.MANAGED_BY_LABEL) == manifests.MANAGED_BY:
        whose = "another Lab Orchestrator installation"
        if labels.get(manifests.INSTALLATION_LABEL):
            whose += f" ({labels[manifests.INSTALLATION_LABEL]})"
        hint = " Give this lab a namespace prefix no other installation on the cluster uses."
    else:
        whose, hint = "someone else", ""
    return f"The namespace {namespace} already exists and belongs to {whose}.{hint}"


def _wait_until_gone(namespace: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if cluster.read_namespace(namespace) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _roll_back(instance: LabInstance, error: ClusterError) -> None:
    """Remove what the failed start created and record why it failed."""
    message = f"Starting failed: {error.message}"
    plain = f"The lab could not start. {error.public_message}"
    if not isinstance(error, _ForeignNamespace):
        try:
            cluster.delete_namespace(instance.namespace)
            if not _wait_until_gone(instance.namespace, settings.LABS_ROLLBACK_WAIT_SECONDS):
                message += " (its namespace is still being deleted)"
        except ClusterError as cleanup_error:
            # The instance is no longer active, so `reconcile` deletes the namespace later.
            message += f" Cleaning up failed too, reconcile will retry: {cleanup_error.message}"
    _fail(instance, message, plain)


def instance_start(*, user: Any, lab: Lab) -> LabInstance:
    """Give the user a private copy of the lab: a ready one from the lab's pool (`running` at once)
    or, when none is ready, a new one, returned in status `starting`.

    Raises LabNotAvailable, LabMisconfigured, InstanceLimitReached, or a ClusterError (after marking
    the instance `failed` and deleting what it created). If the instance is stopped while starting,
    it is returned as it is then (`stopping`/`stopped`).
    """
    machines = list(lab.machines.select_related("image"))
    _check_startable(user=user, lab=lab, machines=machines)
    _abandon_stale_starts(user)
    ready = _take_ready(user=user, lab=lab)
    if ready is not None:
        return _label_handed_over(ready)
    return _start(user=user, lab=lab, machines=machines, pooled=False)


def _start(*, user: Any, lab: Lab, machines: list[LabMachine], pooled: bool) -> LabInstance:
    profile = _profile()
    generated = _Secrets.generate(machines)
    instance = _reserve(user=user, lab=lab, machines=machines, generated=generated, pooled=pooled)
    objects = _instance_manifests(instance, machines, profile, generated)
    with _StartLease(instance.pk):
        try:
            _create_in_cluster(instance, objects)
        except Exception as error:
            instance.refresh_from_db()
            if instance.status != Status.REQUESTED:  # stopped (or given up on) meanwhile: cleaned up
                with contextlib.suppress(ClusterError):
                    cluster.delete_namespace(instance.namespace)
                return instance
            # Anything else (a bug, a client-side validation error) must not leave the row `requested`.
            cause = (
                error
                if isinstance(error, ClusterError)
                else ClusterError(
                    f"Unexpected error: {error!r}",
                    public_message="Something unexpected went wrong. Tell your instructor.",
                )
            )
            _roll_back(instance, cause)
            raise
    now = timezone.now()
    started = _transition(
        instance,
        Status.STARTING,
        started_at=now,
        expires_at=now + timedelta(minutes=lab.lifetime_minutes),
        last_error="",
        last_error_plain="",
    )
    if not started:
        # Stopped while we were creating: make sure what we created after its delete goes too
        # (if this fails, the `stopping` instance's next refresh or reconcile deletes it again).
        with contextlib.suppress(ClusterError):
            cluster.delete_namespace(instance.namespace)
    return instance


# --- Status ------------------------------------------------------------------------------------------


def _machine_status(name: str, vmi: dict[str, Any] | None) -> MachineStatus:
    if vmi is None:
        return MachineStatus(name=name, phase="", ip_address="", paused=False, ready=False)
    status = vmi.get("status") or {}
    conditions = {c.get("type"): c.get("status") == "True" for c in status.get("conditions") or []}
    interfaces = status.get("interfaces") or []
    return MachineStatus(
        name=name,
        phase=status.get("phase") or "",
        ip_address=(interfaces[0].get("ipAddress") or "") if interfaces else "",
        paused=conditions.get("Paused", False),
        ready=conditions.get("Ready", False),
        problem=machine_problem(status),
        pull=pull_progress(status),
    )


def _container_status(name: str, pod: dict[str, Any] | None) -> MachineStatus:
    """A container machine from its Pod: Running only while its container runs (a restarting one is
    not), never paused."""
    if pod is None:
        return MachineStatus(name=name, phase="", ip_address="", paused=False, ready=False, kind="container")
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    running = bool(containers) and all("running" in (c.get("state") or {}) for c in containers)
    phase = status.get("phase") or "Pending"
    return MachineStatus(
        name=name,
        phase="Running" if running else ("Pending" if phase == "Running" else phase),
        ip_address=status.get("podIP") or "",
        paused=False,
        ready=running,
        problem=pod_problem(status),
        kind="container",
    )


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


@dataclass(frozen=True)
class _Derived:
    status: str
    reason: str = ""  # for staff
    plain: str = ""  # for the student


def _derive_status(instance: LabInstance, machines: list[MachineStatus]) -> _Derived:
    """The status the machines imply for a provisioned instance, and why if it failed.

    A machine that cannot start and will not by waiting (image missing, no room, refused, QEMU
    failed, ended) fails the instance at once, with every such machine's reason; one that may still
    start (quota freed) leaves it starting.
    """
    broken = [m for m in machines if m.problem is not None and m.problem.fatal]
    if broken:
        reason = " ".join(_sentence(m.problem.detail(m.name)) for m in broken if m.problem)
        first = broken[0]
        plain = first.problem.plain(first.name) if first.problem else ""
        others = [m.name for m in broken[1:]]
        if others:
            plain += f" The machine{'s' if len(others) > 1 else ''} {', '.join(others)} failed too."
        return _Derived(Status.FAILED, reason, plain)
    for machine in machines:
        if machine.phase == "" and instance.status != Status.STARTING:
            return _Derived(Status.FAILED, f"The machine {machine.name} disappeared from the cluster.")
    if not all(m.phase == "Running" for m in machines):
        return _Derived(instance.status)
    if instance.status == Status.STARTING:
        return _Derived(Status.RUNNING)
    # Pausing pauses the VMs; containers keep running (a Pod cannot be paused on Kubernetes).
    vms = [m for m in machines if m.kind == "vm"]
    if vms and all(m.paused for m in vms):
        return _Derived(Status.PAUSED)
    if not any(m.paused for m in vms):
        return _Derived(Status.RUNNING)
    return _Derived(instance.status)


def _namespace_vanished(instance: LabInstance) -> bool:
    existing = cluster.read_namespace(instance.namespace)
    return existing is None or existing.phase == "Terminating"


def instance_refresh(*, instance: LabInstance) -> InstanceStatus:
    """Ask the cluster for the machines' state (one list call) and record it, as the watcher would.

    For reconcile and "refresh now" (labs.watcher keeps the status current otherwise). A `stopping`
    instance becomes `stopped` here once its namespace is gone. Raises ClusterError if the cluster
    cannot be read; the status is then left as it was.
    """
    if instance.status == Status.STOPPING:
        _finish_stop(instance)
    if instance.status not in PROVISIONED_STATUSES:
        return _instance_status(instance, _stored_machines(instance))
    try:
        vmis = cluster.list_vmis(
            namespace=instance.namespace, label_selector=manifests.instance_selector(instance.pk)
        )
    except ClusterForbidden:
        # The app's rights in a lab namespace come from the RoleBinding inside it: once the namespace
        # is being deleted or gone, reading it is refused rather than empty.
        if not _namespace_vanished(instance):
            raise
        vmis = []
    pods: list[dict[str, Any]] = []
    if instance.machines.filter(kind="container").exists():
        with contextlib.suppress(ClusterForbidden):
            pods = cluster.list_pods(
                namespace=instance.namespace, label_selector=manifests.instance_selector(instance.pk)
            )
    gone = not vmis and not pods and _namespace_vanished(instance)
    return _apply_observation(instance, vmis, namespace_gone=gone, pods=pods)


def instance_observe(
    *,
    instance: LabInstance,
    vmis: list[dict[str, Any]],
    namespace: cluster.NamespaceInfo | None,
    pods: list[dict[str, Any]] = (),
) -> None:
    """Record what the cluster's watch reports about the instance: its namespace (None: gone) and
    the VMIs in it. The watcher's one way to change status (labs.watcher).

    Calls the cluster only to delete what must not keep running: a failed instance's namespace, or
    a stopping instance's namespace that is Active again. A start in progress is left to its process.
    """
    if instance.status == Status.STOPPING:
        with contextlib.suppress(ClusterError):  # stays `stopping`; reconcile retries the DELETE
            _stop_progress(instance, namespace)
    elif instance.status in PROVISIONED_STATUSES:
        gone = not vmis and not pods and (namespace is None or namespace.phase == "Terminating")
        _apply_observation(instance, vmis, namespace_gone=gone, pods=list(pods))


def _apply_observation(
    instance: LabInstance,
    vmis: list[dict[str, Any]],
    *,
    namespace_gone: bool,
    pods: list[dict[str, Any]] = (),
) -> InstanceStatus:
    """Store each machine's state and move the instance to the status the machines imply."""
    by_name = {(vmi.get("metadata") or {}).get("name"): vmi for vmi in vmis}
    pods_by_name = {(pod.get("metadata") or {}).get("name"): pod for pod in pods}
    rows = list(instance.machines.all())
    machines = [
        _container_status(row.name, pods_by_name.get(row.name))
        if row.kind == "container"
        else _machine_status(row.name, by_name.get(row.name))
        for row in rows
    ]
    _record_machines(instance, rows, machines)
    if namespace_gone:
        _fail(instance, "The instance's namespace was deleted outside Lab Orchestrator.")
    else:
        derived = _derive_status(instance, machines)
        target = _settle_pending_action(instance, machines, derived.status)
        if target != instance.status:
            if target == Status.FAILED:
                if _fail(instance, derived.reason, derived.plain):
                    # Nothing of a failed instance may keep running or holding the cluster's
                    # resources; if this call fails, reconcile deletes the namespace later.
                    with contextlib.suppress(ClusterError):
                        cluster.delete_namespace(instance.namespace)
            else:
                _transition(instance, target)
    return _instance_status(instance, machines)


def _stored_fields(machine: MachineStatus) -> dict[str, Any]:
    problem = machine.problem
    return {
        "phase": machine.phase,
        "ip_address": machine.ip_address,
        "paused": machine.paused,
        "ready": machine.ready,
        "problem_code": problem.code if problem else "",
        "problem_fatal": problem.fatal if problem else False,
        "problem_reason": (problem.cluster_reason if problem else "")[:255],
        "problem_message": problem.cluster_message if problem else "",
        "pull_percent": machine.pull.percent if machine.pull else None,
        "pull_message": (machine.pull.cluster_message if machine.pull else "")[:512],
    }


def _record_machines(
    instance: LabInstance, rows: list[InstanceMachine], machines: list[MachineStatus]
) -> None:
    """Write the machines whose state changed, and when the cluster said so (nothing if nothing did)."""
    now = timezone.now()
    changed = []
    for row, machine in zip(rows, machines, strict=True):
        fields = _stored_fields(machine)
        if row.observed_at is None or any(getattr(row, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(row, name, value)
            row.observed_at = now
            changed.append(row)
    if changed:
        InstanceMachine.objects.bulk_update(changed, [*_stored_fields(machines[0]), "observed_at"])
        LabInstance.objects.filter(pk=instance.pk).update(observed_at=now)
        instance.observed_at = now


def stored_machine_status(row: InstanceMachine) -> MachineStatus:
    """A machine's state as last recorded (no cluster call)."""
    problem = (
        MachineProblem(row.problem_code, row.problem_fatal, row.problem_reason, row.problem_message)
        if row.problem_code
        else None
    )
    return MachineStatus(
        name=row.name,
        phase=row.phase,
        ip_address=row.ip_address,
        paused=row.paused,
        ready=row.ready,
        problem=problem,
        kind=row.kind,
        pull=PullProgress(row.pull_percent, row.pull_message) if row.pull_percent is not None else None,
    )


def _stored_machines(instance: LabInstance) -> list[MachineStatus]:
    if instance.status not in PROVISIONED_STATUSES:
        return [_machine_status(row.name, None) for row in instance.machines.all()]
    return [stored_machine_status(row) for row in instance.machines.all()]


def _instance_status(instance: LabInstance, machines: list[MachineStatus]) -> InstanceStatus:
    return InstanceStatus(
        status=instance.status,
        machines=machines,
        last_error=instance.last_error,
        last_error_plain=instance.last_error_plain or instance.last_error,
    )


# --- Stop --------------------------------------------------------------------------------------------


def _begin_stop(instance: LabInstance) -> bool:
    """The stop's one DELETE of the namespace, then the first look whether it is gone already."""
    cluster.delete_namespace(instance.namespace)
    return _finish_stop(instance)


def _finish_stop(instance: LabInstance) -> bool:
    """Finish the stop if the namespace is gone (GET says 404); True if this call finished it.

    A Terminating namespace is only read, never deleted again: its termination is under way. One
    still Active is deleted: a start racing the stop recreated it, or the stop's DELETE never
    reached the server.
    """
    return _stop_progress(instance, cluster.read_namespace(instance.namespace))


def _stop_progress(instance: LabInstance, namespace: cluster.NamespaceInfo | None) -> bool:
    """Finish the stop if `namespace` (as just read or watched) is None; else see `_finish_stop`."""
    if namespace is not None:
        if namespace.phase != "Terminating":
            cluster.delete_namespace(instance.namespace)
        return False
    now = timezone.now()
    # An instance whose lifetime had run out when the stop finished is reported as expired.
    expired = instance.expires_at is not None and instance.expires_at <= now
    return _transition(instance, Status.EXPIRED if expired else Status.STOPPED, stopped_at=now)


def instance_stop(*, instance: LabInstance, reason: str = "") -> LabInstance:
    """Delete the instance's namespace; `stopping` until the cluster says it is gone, then `stopped`.

    `reason`, when the stop is not the user's own doing, is recorded in `last_error` for the owner
    and staff to read. Stopping a stopped (or stopping) instance is harmless. Raises
    InvalidTransition only for states that have nothing to stop, never for "already stopped".
    """
    if instance.status in (Status.STOPPED, Status.EXPIRED):
        return instance
    because = {"last_error": reason[:2000], "last_error_plain": reason[:2000]} if reason else {}
    already_stopping = instance.status == Status.STOPPING
    if not already_stopping and not _transition(instance, Status.STOPPING, **because):
        return instance_stop(instance=instance, reason=reason)  # someone else moved it; act on what it is now
    if not instance.namespace:
        _transition(instance, Status.STOPPED, stopped_at=timezone.now())
    elif already_stopping:
        _finish_stop(instance)  # the DELETE was made: look, and delete only an Active namespace
    else:
        _begin_stop(instance)
    return instance


def instances_stop_all(*, reason: str, wait_seconds: float = 0.0) -> list[LabInstance]:
    """Stop every active instance, recording `reason`, e.g. because the cluster they run in (the
    local cluster of `make run`) shuts down; wait up to `wait_seconds` for their namespaces to go.

    Returns the instances it acted on, as they are then. One that cannot be stopped now stays
    `stopping` and `reconcile` finishes it.
    """
    instances = list(LabInstance.objects.active())
    for instance in instances:
        try:
            instance_stop(instance=instance, reason=reason)
        except ClusterError as error:
            logger.warning("Stopping instance %s: %s", instance.pk, error.message)
    deadline = time.monotonic() + wait_seconds
    while any(i.status == Status.STOPPING for i in instances) and time.monotonic() < deadline:
        time.sleep(0.2)
        for instance in instances:
            if instance.status == Status.STOPPING:
                with contextlib.suppress(ClusterError):
                    _finish_stop(instance)
    return instances


# --- Pause and resume --------------------------------------------------------------------------------
#
# KubeVirt answers a pause once the guest is paused, but writes the VMI's `Paused` condition at
# virt-handler's next sync (pkg/virt-handler/vm.go, updatePausedConditions), and decides "already
# paused" / "not paused" from that condition alone. So the instance remembers what was asked
# (`pending_action`) until every machine's condition agrees, and shows that meanwhile instead of the
# lagging condition; an opposite request in that window is refused (KubeVirt would answer an unpause
# "VMI is not paused" while the guest is paused, and the machine would stay paused).


def _pending_expired(instance: LabInstance, now: datetime) -> bool:
    timeout = timedelta(seconds=settings.LABS_PAUSE_TIMEOUT_SECONDS)
    return instance.pending_since is None or instance.pending_since + timeout <= now


def _clear_pending(instance: LabInstance, **fields: Any) -> None:
    """Forget the pending action (conditionally: a newer request made meanwhile is kept)."""
    updated = LabInstance.objects.filter(
        pk=instance.pk, pending_action=instance.pending_action, pending_since=instance.pending_since
    ).update(pending_action=PendingAction.NONE, pending_since=None, **fields)
    if updated:
        instance.pending_action, instance.pending_since = PendingAction.NONE, None
        for name, value in fields.items():
            setattr(instance, name, value)
    else:
        instance.refresh_from_db()


def _settle_pending_action(instance: LabInstance, machines: list[MachineStatus], target: str) -> str:
    """The status to show while a pause or resume awaits the cluster's confirmation.

    Confirmed (every machine's Paused condition agrees): the request is forgotten. Not yet: the
    status asked for is kept, so it does not flap back. Not confirmed within
    LABS_PAUSE_TIMEOUT_SECONDS: dropped with an error, and the status is what the cluster says.
    """
    if not instance.pending_action or target == Status.FAILED:
        return target
    if instance.status not in (Status.RUNNING, Status.PAUSED):
        return target
    wants_paused = instance.pending_action == PendingAction.PAUSE
    wanted = Status.PAUSED if wants_paused else Status.RUNNING
    vms = [m for m in machines if m.kind == "vm"]
    if all(m.phase == "Running" and m.paused == wants_paused for m in vms):
        _clear_pending(instance)
        return wanted
    if not _pending_expired(instance, timezone.now()):
        return wanted
    seconds = f"{settings.LABS_PAUSE_TIMEOUT_SECONDS:g}"
    message = f"The machines did not {'pause' if wants_paused else 'resume'} within {seconds} seconds."
    logger.warning("Instance %s: %s", instance.pk, message)
    _clear_pending(instance, last_error=message, last_error_plain=message)
    return Status.PAUSED if all(m.paused for m in vms) else Status.RUNNING


def _wait_for_confirmation(instance: LabInstance) -> None:
    """Give the cluster a moment (OPPOSITE_ACTION_WAIT_SECONDS) to confirm the pending action, so a
    quick pause-then-resume usually just works; the caller refuses if it is still pending."""
    deadline = time.monotonic() + OPPOSITE_ACTION_WAIT_SECONDS
    while True:
        instance_refresh(instance=instance)
        if not instance.pending_action or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def _set_paused(instance: LabInstance, paused: bool) -> LabInstance:
    target, source = (Status.PAUSED, Status.RUNNING) if paused else (Status.RUNNING, Status.PAUSED)
    if instance.status == target:
        return instance
    if instance.status != source:
        raise InvalidTransition(
            f"Only a {Status(source).label.lower()} instance can be "
            f"{'paused' if paused else 'resumed'}; this one is {Status(instance.status).label.lower()}.",
            current=instance.status,
            target=target,
        )
    if instance.pending_action:
        _wait_for_confirmation(instance)
        if instance.status != source:
            return _set_paused(instance, paused)
        if instance.pending_action:
            still = "pausing" if instance.pending_action == PendingAction.PAUSE else "resuming"
            raise InvalidTransition(
                f"The machines are still {still}; try again in a moment.",
                current=instance.status,
                target=target,
            )
    # Only the VMs: a Pod cannot be paused on Kubernetes, so containers keep running while the
    # instance is paused (README, "Container machines").
    names = list(instance.machines.filter(kind="vm").values_list("name", flat=True))
    if not names:
        raise InvalidTransition(
            "This lab has only containers, which cannot be paused.", current=instance.status, target=target
        )
    cluster.set_vmis_paused(namespace=instance.namespace, names=names, paused=paused)
    _transition(
        instance,
        target,
        pending_action=PendingAction.PAUSE if paused else PendingAction.RESUME,
        pending_since=timezone.now(),
        last_error="",
        last_error_plain="",
    )
    return instance


def instance_pause(*, instance: LabInstance) -> LabInstance:
    """Pause every machine (idempotent). Raises InvalidTransition unless running or paused, or while
    a resume is not yet confirmed by the cluster."""
    return _set_paused(instance, True)


def instance_resume(*, instance: LabInstance) -> LabInstance:
    """Unpause every machine (idempotent). Raises InvalidTransition unless paused or running, or
    while a pause is not yet confirmed by the cluster."""
    return _set_paused(instance, False)


MAX_EXTENSION = timedelta(hours=24)


def instance_extend(*, instance: LabInstance, minutes: int) -> LabInstance:
    """Move an active instance's expiry `minutes` later (1 to 24 h), counted from its current expiry
    or, if that has passed already, from now. Raises InvalidTransition for an instance that is not
    active (nothing left to extend) and ValueError for a bad number of minutes."""
    extension = timedelta(minutes=minutes)
    if not timedelta(minutes=1) <= extension <= MAX_EXTENSION:
        raise ValueError(f"Extend by 1 to {int(MAX_EXTENSION.total_seconds() // 60)} minutes.")
    now = timezone.now()
    for _ in range(3):  # the expiry may move under us (the reaper, another extension): retry on it
        if instance.status not in (Status.REQUESTED, Status.STARTING, Status.RUNNING, Status.PAUSED):
            raise InvalidTransition(
                f"A {Status(instance.status).label.lower()} instance cannot be extended.",
                current=instance.status,
                target=instance.status,
            )
        base = max(instance.expires_at or now, now)
        new_expiry = base + extension
        updated = LabInstance.objects.filter(
            pk=instance.pk, status=instance.status, expires_at=instance.expires_at
        ).update(expires_at=new_expiry)
        if updated:
            instance.expires_at = new_expiry
            return instance
        instance.refresh_from_db()
    raise InvalidTransition(
        "The instance is changing; try again in a moment.", current=instance.status, target=""
    )


# --- Activity, expiry, reconciliation ----------------------------------------------------------------


def instance_touch(*, instance: LabInstance) -> None:
    """Record console or tutorial activity; at most one database write a minute per instance."""
    now = timezone.now()
    threshold = now - ACTIVITY_WRITE_INTERVAL
    if instance.last_activity_at is not None and instance.last_activity_at > threshold:
        return
    LabInstance.objects.filter(pk=instance.pk, status__in=LabInstance.ACTIVE_STATUSES).exclude(
        last_activity_at__gt=threshold
    ).update(last_activity_at=now)
    instance.last_activity_at = now


def _idle_since(instance: LabInstance) -> datetime | None:
    return instance.last_activity_at or instance.started_at


def _expiry_due(instance: LabInstance, now: datetime) -> bool:
    if instance.pooled:  # waiting in the pool: its lifetime starts at the hand-over
        return False
    if instance.expires_at is not None and instance.expires_at <= now:
        return True
    idle_minutes = instance.lab.idle_timeout_minutes
    idle_since = _idle_since(instance)
    return (
        bool(idle_minutes) and idle_since is not None and idle_since + timedelta(minutes=idle_minutes) <= now
    )


def instance_expire_due(*, now: datetime | None = None) -> list[int]:
    """Stop instances past their lifetime or idle timeout; returns the ids this call claimed.

    The claim is the conditional UPDATE to `stopping`, so two runs never stop the same instance.
    An idle instance's `expires_at` is brought forward to now: its lifetime ended there.
    """
    now = now or timezone.now()
    candidates = LabInstance.objects.filter(status__in=PROVISIONED_STATUSES).select_related("lab")
    claimed = []
    for instance in candidates:
        if not _expiry_due(instance, now):
            continue
        expires_at = min(instance.expires_at or now, now)
        if not _transition(instance, Status.STOPPING, expires_at=expires_at):
            continue
        claimed.append(instance.pk)
        try:
            _begin_stop(instance)
        except ClusterError as error:  # stays `stopping`; reconcile finishes it
            logger.warning("Stopping expired instance %s: %s", instance.pk, error.message)
    return claimed


def _reconcile_instance(
    instance: LabInstance,
    namespaces: set[str],
    now: datetime,
    report: ReconcileReport,
    *,
    watch_current: bool,
) -> None:
    start_timeout = timedelta(seconds=settings.LABS_START_TIMEOUT_SECONDS)
    if instance.status == Status.REQUESTED:
        # A start in progress; one whose process is gone (its lease ran out) is rolled back here.
        if _start_abandoned(instance, now) and _abandon_start(instance, now):
            report.failed.append(instance.pk)
    elif instance.status == Status.STOPPING:
        if _finish_stop(instance):
            report.stopped.append(instance.pk)
    elif instance.namespace not in namespaces and _namespace_vanished(instance):
        if _fail(instance, "The instance's namespace was deleted outside Lab Orchestrator."):
            report.failed.append(instance.pk)
    else:
        if watch_current:
            # The watcher keeps the status current: judge the start time-out on what it recorded.
            status = _instance_status(instance, _stored_machines(instance))
        else:
            status = instance_refresh(instance=instance)
            report.refreshed.append(instance.pk)
        too_slow = instance.started_at is not None and instance.started_at + start_timeout <= now
        if status.status == Status.STARTING and too_slow:
            seconds = settings.LABS_START_TIMEOUT_SECONDS
            plain = f"The machines did not start within {seconds} seconds."
            # Say what they were waiting for, if the cluster said.
            waiting = [m for m in status.machines if m.problem is not None]
            reason = " ".join([plain, *(_sentence(m.problem.detail(m.name)) for m in waiting if m.problem)])
            if waiting and waiting[0].problem:
                plain += " " + waiting[0].problem.plain(waiting[0].name)
            if _fail(instance, reason, plain):
                report.failed.append(instance.pk)


def reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Make the cluster and the database agree; safe to run in several processes at once.

    Deletes this installation's namespaces that no active instance owns, fails instances whose
    namespace vanished or that never started, finishes stops and refreshes the others' status.
    Managed namespaces without an installation label are reported, never deleted.
    """
    now = now or timezone.now()
    report = ReconcileReport()
    # Only this installation's namespaces: another one's, on the same cluster, are not orphans.
    # The cluster is listed before the database is read: a start commits its instance before
    # creating the namespace, so every namespace seen here has its owner in the query below.
    namespaces = cluster.list_namespaces(label_selector=manifests.installation_selector(installation_id()))
    unlabelled = cluster.list_namespaces(label_selector=manifests.UNLABELLED_SELECTOR)
    active = {i.namespace: i for i in LabInstance.objects.active().select_related("lab")}
    # Our own instances started before the label existed are looked after by name, as before.
    report.unlabelled = sorted(namespace.name for namespace in unlabelled if namespace.name not in active)
    for namespace in namespaces:
        if namespace.name not in active and namespace.phase != "Terminating":
            cluster.delete_namespace(namespace.name)
            report.orphans_deleted.append(namespace.name)
    names = {namespace.name for namespace in namespaces}
    # With the watcher in sync, no instance needs a LIST of its own (200 open labs: 200 calls a round).
    watch_current = watch_health(now).in_sync
    for instance in active.values():
        try:
            _reconcile_instance(instance, names, now, report, watch_current=watch_current)
        except ClusterUnavailable:
            raise
        except ClusterError as error:
            report.errors.append(f"instance {instance.pk}: {error.message}")
    return report


# --- Ready instances (the lab's pool) ----------------------------------------------------------------
#
# Pool instances are started by `pool_refill` (the `reconcile` housekeeping loop) and owned by the
# pool account, a user nobody can sign in as. Their passwords were generated for them and shown to
# nobody: the account cannot sign in and students only see their own instances. The conditional
# UPDATE that hands one over changes the owner, so exactly one student ever gets those credentials
# (staff, who may see every instance, excepted, as for any instance). Lifetime and idle time count
# from the hand-over; until then a pool instance never expires.

# Not a valid user name for any form (the username validator refuses spaces and parentheses), so no
# one can sign up as the pool.
POOL_USERNAME = "(ready pool)"


def pool_account() -> Any:
    user, created = get_user_model().objects.get_or_create(
        username=POOL_USERNAME, defaults={"is_active": False, "first_name": "Ready", "last_name": "pool"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _take_ready(*, user: Any, lab: Lab) -> LabInstance | None:
    """Hand a running pool instance of the lab to the user, within the user's limits; None if none.

    The hand-over is one conditional UPDATE (still pooled, still running, no pause pending): two
    students who pick the same instance in parallel cannot both get it; the one who loses tries the
    next ready instance.
    """
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        ready = LabInstance.objects.filter(lab=lab, pooled=True, status=Status.RUNNING, pending_action="")
        candidates = list(ready.order_by("id").values_list("pk", flat=True)[:10])
        if not candidates:
            return None
        _check_limits(user=user, lab=lab)
        now = timezone.now()
        for pk in candidates:
            taken = ready.filter(pk=pk).update(
                owner=user,
                pooled=False,
                handed_over_at=now,
                expires_at=now + timedelta(minutes=lab.lifetime_minutes),
                last_activity_at=now,
            )
            if taken:
                return LabInstance.objects.select_related("lab").get(pk=pk)
    return None


def _label_handed_over(instance: LabInstance) -> LabInstance:
    """Put the new owner's label on the namespace and machines. The database already says whose the
    instance is (that is what permissions read); a label the cluster refused is logged and recorded
    for staff, and the student keeps the instance."""
    vms = list(instance.machines.filter(kind="vm").values_list("name", flat=True))
    containers = list(instance.machines.filter(kind="container").values_list("name", flat=True))
    try:
        cluster.set_labels(
            namespace=instance.namespace,
            vmi_names=vms,
            pod_names=containers,
            labels={manifests.OWNER_LABEL: str(instance.owner_id)},
        )
    except ClusterError as error:
        logger.warning("Labelling handed-over instance %s: %s", instance.pk, error.message)
        LabInstance.objects.filter(pk=instance.pk).update(
            last_error=f"Labelling the new owner failed: {error.message}"
        )
    return instance


@dataclass
class PoolReport:
    started: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def pool_target(lab: Lab, now: datetime) -> int:
    """How many ready instances the lab wants now: its "keep ready" number, or more while a schedule
    runs. A schedule's instances are started POOL_LEAD_MINUTES early, so they are running at its time."""
    lead = timedelta(minutes=settings.POOL_LEAD_MINUTES)
    scheduled = [
        schedule.count
        for schedule in lab.ready_schedules.all()
        if schedule.starts_at - lead
        <= now
        < schedule.starts_at + timedelta(minutes=schedule.duration_minutes)
    ]
    return max([lab.ready_instances, *scheduled])


def pool_refill(*, now: datetime | None = None) -> PoolReport:
    """Start ready instances up to each published lab's target and stop the surplus.

    Waiting pool instances (requested, starting, running) count towards the target. A start the
    cluster refuses (its quota, a lost connection) ends this lab's refill for this round; the next
    round tries again. A surplus instance is stopped only if it is still pooled at that moment (a
    conditional UPDATE): a student's hand-over in between wins.
    """
    now = now or timezone.now()
    report = PoolReport()
    pooled = LabInstance.objects.filter(pooled=True)
    labs = Lab.objects.filter(
        Q(ready_instances__gt=0) | Q(instances__pooled=True) | Q(ready_schedules__isnull=False)
    )
    for lab in labs.distinct().prefetch_related("ready_schedules"):
        target = pool_target(lab, now) if lab.published else 0
        waiting = list(pooled.filter(lab=lab, status__in=(Status.REQUESTED, Status.STARTING, Status.RUNNING)))
        if len(waiting) < target:
            _pool_start(lab, target - len(waiting), report)
        elif len(waiting) > target:
            # Not-yet-running ones first: they cost the most to keep and are the furthest from use.
            surplus = sorted(waiting, key=lambda i: (i.status == Status.RUNNING, -i.pk))[
                : len(waiting) - target
            ]
            for instance in surplus:
                _pool_stop(instance, report)
    return report


def _pool_start(lab: Lab, count: int, report: PoolReport) -> None:
    machines = list(lab.machines.select_related("image"))
    account = pool_account()
    for _ in range(count):
        try:
            _check_startable(user=account, lab=lab, machines=machines)
            instance = _start(user=account, lab=lab, machines=machines, pooled=True)
        except (ClusterError, LabNotAvailable, LabMisconfigured) as error:
            report.errors.append(f"pool of {lab.slug}: {error}")
            return
        report.started.append(instance.pk)


def _pool_stop(instance: LabInstance, report: PoolReport) -> None:
    if instance.status == Status.REQUESTED:
        return  # its start is in progress; it is stopped once it runs, if still surplus then
    if not _transition(instance, Status.STOPPING, only_if=Q(pooled=True), pooled=False):
        return
    report.stopped.append(instance.pk)
    try:
        _begin_stop(instance)
    except ClusterError as error:  # stays `stopping`; reconcile finishes it
        report.errors.append(f"stopping pool instance {instance.pk}: {error.message}")
