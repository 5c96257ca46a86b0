"""Console tickets: issue one for a user, redeem it once in the console proxy.

A ticket is a random value bound to a user, an instance, a machine of that instance and a kind of
stream (VNC or serial). It is valid for settings.CONSOLE_TICKET_SECONDS and for one redemption:
the row is deleted by the redemption that wins, and a redemption whose DELETE removed nothing
lost the race (or came too late). A presented ticket is spent even when its binding does not match,
so a leaked value cannot be tried against other machines.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from laborchestrator import errors
from labs.models import InstanceMachine, LabInstance
from vncproxy.models import ConsoleTicket

# Statuses whose machines exist in the cluster, so a console can be opened.
CONSOLE_STATUSES = (LabInstance.Status.STARTING, LabInstance.Status.RUNNING, LabInstance.Status.PAUSED)


class TicketError(errors.ServiceError):
    """A ticket cannot be issued or redeemed; the same words for students and staff."""

    api_code = errors.NOT_FOUND


class MachineNotFound(TicketError):
    """The instance has no machine of that name (or the user may not see the instance)."""


class ConsoleNotOffered(TicketError):
    """The machine's image has no console of that kind."""

    api_code = errors.INVALID
    api_field = "kind"


class ConsoleNotRunning(TicketError):
    """The instance is not in a state whose machines can be connected to."""

    api_code = errors.CONSOLE_NOT_RUNNING


class TicketInvalid(TicketError):
    """Redemption refused. `reason` says why, for logs; the client is only told it was refused."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _may_use(user: Any, instance: LabInstance) -> bool:
    return bool(user.is_active and (user.is_staff or instance.owner_id == user.pk))


def ticket_issue(*, user: Any, instance: LabInstance, machine_name: str, kind: str) -> tuple[str, datetime]:
    """A new ticket value and its expiry time.

    Raises MachineNotFound (also when the user may not use the instance), ConsoleNotOffered or
    ConsoleNotRunning.
    """
    if not _may_use(user, instance):
        raise MachineNotFound("No such machine.")
    machine = InstanceMachine.objects.filter(instance=instance, name=machine_name).first()
    if machine is None:
        raise MachineNotFound(f"This instance has no machine named {machine_name!r}.")
    kind = ConsoleTicket.Kind(kind)
    if not machine.offers(kind):
        raise ConsoleNotOffered(f"The machine {machine_name!r} has no {kind.label.lower()}.")
    if instance.status not in CONSOLE_STATUSES:
        raise ConsoleNotRunning(
            f"The instance is {LabInstance.Status(instance.status).label.lower()}; "
            "consoles open while it is starting, running or paused."
        )
    now = timezone.now()
    # Expired tickets are never redeemable; dropping them here keeps the table small.
    ConsoleTicket.objects.filter(expires_at__lte=now).delete()
    value = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.CONSOLE_TICKET_SECONDS)
    ConsoleTicket.objects.create(
        value_hash=_hash(value),
        user=user,
        instance=instance,
        machine_name=machine_name,
        kind=kind,
        expires_at=expires_at,
    )
    return value, expires_at


def ticket_redeem(*, value: str, instance_id: int, machine_name: str, kind: str) -> Any:
    """Spend the ticket and return its user. Raises TicketInvalid if it is unknown, spent, expired,
    bound to another instance, machine or kind, or its user may no longer use the instance."""
    ticket = ConsoleTicket.objects.select_related("user", "instance").filter(value_hash=_hash(value)).first()
    if ticket is None:
        raise TicketInvalid("Unknown or already used ticket.", reason="unknown")
    # The conditional DELETE is the claim: of two concurrent redemptions only one deletes the row.
    deleted, _ = ConsoleTicket.objects.filter(pk=ticket.pk).delete()
    if not deleted:
        raise TicketInvalid("Unknown or already used ticket.", reason="reused")
    if ticket.expires_at <= timezone.now():
        raise TicketInvalid("The ticket has expired.", reason="expired")
    if (ticket.instance_id, ticket.machine_name, ticket.kind) != (int(instance_id), machine_name, kind):
        raise TicketInvalid("The ticket is for another console.", reason="mismatch")
    if not _may_use(ticket.user, ticket.instance):
        raise TicketInvalid("The ticket's user may no longer use this instance.", reason="user")
    return ticket.user
