"""Instructors' actions from the class view. Every action goes through the labs lifecycle (which
checks each transition) and is logged as a ClassAction, whether it worked or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from classroom.models import MAX_MESSAGE_LENGTH, ClassAction, StudentMessage, TutorialPosition
from labs import lifecycle
from labs.exceptions import LabError
from labs.models import Lab, LabInstance
from tutorials.models import Tutorial, TutorialPage

Kind = ClassAction.Kind


class ActionRefused(Exception):
    """Bad input for an action (unknown kind, no text, bad minutes): nothing was done."""


@dataclass(frozen=True)
class ActionResult:
    instance_id: int | None
    ok: bool
    message: str  # for the instructor: what happened, or the exact reason it did not


def _run_one(*, actor: Any, instance: LabInstance, kind: str, minutes: int, text: str) -> ActionResult:
    detail = ""
    try:
        if kind == Kind.EXTEND:
            detail = f"+{minutes} min"
            lifecycle.instance_extend(instance=instance, minutes=minutes)
        elif kind == Kind.PAUSE:
            lifecycle.instance_pause(instance=instance)
        elif kind == Kind.RESUME:
            lifecycle.instance_resume(instance=instance)
        elif kind == Kind.STOP:
            lifecycle.instance_stop(
                instance=instance, reason=f"Stopped by your instructor ({actor.get_username()})."
            )
        elif kind == Kind.MESSAGE:
            detail = text
            StudentMessage.objects.create(instance=instance, sender=actor, text=text)
    except (LabError, ValueError) as error:
        message = getattr(error, "message", "") or str(error)
        ClassAction.objects.create(
            actor=actor, lab_id=instance.lab_id, instance=instance, kind=kind, detail=detail, error=message
        )
        return ActionResult(instance.pk, False, message)
    ClassAction.objects.create(
        actor=actor, lab_id=instance.lab_id, instance=instance, kind=kind, detail=detail
    )
    return ActionResult(instance.pk, True, "done")


def class_action(
    *,
    actor: Any,
    labs: list[Lab],
    instance_ids: list[int],
    kind: str,
    minutes: int = 0,
    text: str = "",
    student_ids: frozenset[int] | None = None,
) -> list[ActionResult]:
    """Do `kind` to each of the instances (of `labs`, which the actor may teach, and of `student_ids`
    when the class is a set of students), one by one: one failure does not stop the others. Raises
    ActionRefused for bad input, before doing anything."""
    if kind not in (Kind.EXTEND, Kind.PAUSE, Kind.RESUME, Kind.STOP, Kind.MESSAGE):
        raise ActionRefused(f"Unknown action {kind!r}.")
    text = (text or "").strip()
    if kind == Kind.MESSAGE and not text:
        raise ActionRefused("Write a message first.")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise ActionRefused(f"A message is at most {MAX_MESSAGE_LENGTH} characters.")
    if kind == Kind.EXTEND and not 1 <= minutes <= int(lifecycle.MAX_EXTENSION.total_seconds() // 60):
        raise ActionRefused("Extend by 1 to 1440 minutes.")
    if not instance_ids:
        raise ActionRefused("Select at least one student.")
    rows = LabInstance.objects.filter(pk__in=instance_ids, lab__in=[lab.pk for lab in labs])
    if student_ids is not None:
        rows = rows.filter(owner__in=student_ids)
    instances = list(rows.select_related("lab"))
    if len(instances) != len(set(instance_ids)):
        raise ActionRefused("Some of the selected instances are not in this class.")
    return [_run_one(actor=actor, instance=i, kind=kind, minutes=minutes, text=text) for i in instances]


def position_record(*, user: Any, instance: LabInstance, tutorial: Tutorial, page: TutorialPage) -> None:
    """The student opened `page` in `instance` (their own): the class view shows it."""
    if instance.owner_id != user.pk or page.tutorial_id != tutorial.pk:
        return
    with transaction.atomic():
        TutorialPosition.objects.update_or_create(
            instance=instance, defaults={"tutorial": tutorial, "page": page}
        )
