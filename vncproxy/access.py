"""Who may open which console stream: the authorisation of the console proxy, in one function.

Runs in a worker thread (it queries the database); the consumer turns a `StreamRefused` into the
close code and reason of the table in `vncproxy/consumers.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from classes.models import Classroom
from labs.models import InstanceMachine, Lab, LabInstance
from vncproxy.tickets import TicketInvalid, ticket_redeem

# Statuses whose machines may be connected to. A starting instance is allowed so the serial
# console shows the boot; its machines may not be running yet, and then the cluster answers 400,
# which closes with "not running" too. Paused machines cannot take input, so they are refused.
STREAMABLE_STATUSES = (LabInstance.Status.STARTING, LabInstance.Status.RUNNING)


class StreamRefused(Exception):
    """`code` and `reason` go to the browser; `cause` (never a ticket value) goes to the log."""

    def __init__(self, code: int, reason: str, *, cause: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.cause = cause


@dataclass(frozen=True)
class StreamAccess:
    user: Any
    instance: LabInstance
    machine: InstanceMachine


def authorise_stream(
    *, session_user: Any, ticket: str | None, instance_id: int, machine_name: str, kind: str
) -> StreamAccess:
    """The user, instance and machine of an allowed stream, or raise StreamRefused.

    A ticket, when given, is the credential (and is spent, even when the rest fails); otherwise
    the session's user. The user must own the instance or be staff.
    """
    if ticket:
        try:
            user = ticket_redeem(value=ticket, instance_id=instance_id, machine_name=machine_name, kind=kind)
        except TicketInvalid as error:
            raise StreamRefused(4401, "Console ticket refused.", cause=f"ticket {error.reason}") from error
    elif session_user is not None and session_user.is_authenticated:
        user = session_user
    else:
        raise StreamRefused(4401, "Not signed in.", cause="anonymous")
    if not user.is_active:
        raise StreamRefused(4401, "Not signed in.", cause="inactive user")
    instance = LabInstance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise StreamRefused(4404, "No such lab instance.", cause="no such instance")
    if not (user.is_staff or instance.owner_id == user.pk):
        raise StreamRefused(4403, "This lab instance is not yours.", cause="not owner")
    machine = InstanceMachine.objects.filter(instance=instance, name=machine_name).first()
    if machine is None:
        raise StreamRefused(4404, "No such machine in this lab instance.", cause="no such machine")
    if not machine.offers(kind):
        label = {"vnc": "graphical desktop", "serial": "serial console"}.get(kind, "terminal")
        raise StreamRefused(4404, f"This machine has no {label}.", cause=f"no {kind}")
    if instance.status not in STREAMABLE_STATUSES:
        label = LabInstance.Status(instance.status).label.lower()
        message = f"The lab instance is not running ({label})."
        raise StreamRefused(4409, message, cause=f"status {instance.status}")
    return StreamAccess(user=user, instance=instance, machine=machine)


def authorise_watch(*, user: Any, instance_id: int, machine_name: str, kind: str) -> StreamAccess:
    """An instructor watching a student's console read-only: signed in with a session (no tickets),
    staff, and teaching the student: the lab's owner, the owner of a sign-up class that offers the lab
    and has the student, or a superuser. Raises StreamRefused."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise StreamRefused(4401, "Not signed in.", cause="anonymous")
    instance = LabInstance.objects.select_related("lab").filter(pk=instance_id).first()
    if instance is None:
        raise StreamRefused(4404, "No such lab instance.", cause="no such instance")
    teaches_lab = Lab.objects.taught_by(user).filter(pk=instance.lab_id).exists()
    teaches_student = Classroom.objects.managed_by(user).filter(
        labs=instance.lab_id, members=instance.owner_id
    )
    if not (teaches_lab or teaches_student.exists()):
        raise StreamRefused(4403, "Only the lab's instructors may watch its students.", cause="not teaching")
    machine = InstanceMachine.objects.filter(instance=instance, name=machine_name).first()
    if machine is None or not machine.offers(kind):
        raise StreamRefused(4404, "No such console in this lab instance.", cause="no such console")
    if instance.status not in STREAMABLE_STATUSES:
        label = LabInstance.Status(instance.status).label.lower()
        raise StreamRefused(
            4409, f"The lab instance is not running ({label}).", cause=f"status {instance.status}"
        )
    return StreamAccess(user=user, instance=instance, machine=machine)
