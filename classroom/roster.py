"""The class view's data: one row per student's current instance, a summary per step, the recent
actions. Read from the database only (status is written there by the labs app), with a fixed number
of queries however many students, instances or steps there are: the page polls it every few seconds.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from classroom.models import ClassAction, TutorialPosition
from labs.models import InstanceMachine, Lab, LabInstance
from tutorials.models import CheckRun, Step, StepCompletion, StepVerification
from vncproxy.models import ConsoleWatch

# Instances that ended longer ago than this are no longer anyone's current instance in the view.
RECENT = timedelta(hours=12)
DEFAULT_STUCK_MINUTES = 10
RECENT_ACTIONS = 50


@dataclass(frozen=True)
class ClassScope:
    """Whose instances of which labs a class view shows."""

    title: str
    labs: list[Lab]
    student_ids: frozenset[int] | None = None  # None: everyone who started one of the labs


@dataclass
class StepInfo:
    id: int
    label: str  # "Tutorial · page 2 · step 1"
    tutorial_id: int
    page_id: int
    page_position: int  # the page's index in its tutorial, from 0
    checked: bool
    index: int  # reading order among the scope's steps


@dataclass
class StudentRow:
    instance: LabInstance
    current_page: str = ""
    current_page_id: int | None = None
    done: set[int] = field(default_factory=set)
    verified: set[int] = field(default_factory=set)
    failed_checks: list[str] = field(default_factory=list)
    last_progress_at: datetime | None = None
    watched_now: bool = False
    step_done_at: dict[int, datetime] = field(default_factory=dict)
    machines: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClassState:
    rows: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    totals: dict[str, int]


def _current_instances(scope: ClassScope, now: datetime) -> list[LabInstance]:
    """Each student's newest instance of the scope's labs: active ones, or ended within RECENT."""
    instances = (
        LabInstance.objects.filter(lab__in=[lab.pk for lab in scope.labs])
        .filter(Q(status__in=LabInstance.ACTIVE_STATUSES) | Q(created_at__gte=now - RECENT))
        .select_related("owner", "lab")
        .order_by("created_at", "id")
    )
    if scope.student_ids is not None:
        instances = instances.filter(owner__in=scope.student_ids)
    newest: dict[tuple[int, int], LabInstance] = {}
    for instance in instances:
        newest[(instance.owner_id, instance.lab_id)] = instance
    return sorted(newest.values(), key=lambda i: (i.owner.get_username(), i.lab.name))


def _steps(scope: ClassScope) -> list[StepInfo]:
    rows = (
        Step.objects.filter(page__tutorial__labs__in=[lab.pk for lab in scope.labs])
        .distinct()
        .order_by("page__tutorial__title", "page__tutorial_id", "page__order", "page_id", "order", "id")
        .values_list("pk", "page__tutorial__title", "page__tutorial_id", "page_id", "step_check__id")
    )
    steps: list[StepInfo] = []
    page_positions: dict[int, dict[int, int]] = defaultdict(dict)
    step_numbers: dict[int, int] = defaultdict(int)
    for step_id, title, tutorial_id, page_id, check_id in rows:
        pages = page_positions[tutorial_id]
        pages.setdefault(page_id, len(pages))
        step_numbers[page_id] += 1
        position = pages[page_id]
        label = f"{title} · page {position + 1} · step {step_numbers[page_id]}"
        steps.append(
            StepInfo(step_id, label, tutorial_id, page_id, position, check_id is not None, len(steps))
        )
    return steps


def class_state(
    scope: ClassScope, *, now: datetime | None = None, stuck_minutes: int = DEFAULT_STUCK_MINUTES
) -> ClassState:
    now = now or timezone.now()
    instances = _current_instances(scope, now)
    steps = _steps(scope)
    step_ids = [s.id for s in steps]
    checked = {s.id for s in steps if s.checked}
    by_id = {s.id: s for s in steps}
    rows = {i.pk: StudentRow(instance=i) for i in instances}
    owners = {i.owner_id for i in instances}

    for position in TutorialPosition.objects.filter(instance__in=rows).select_related("page", "tutorial"):
        row = rows[position.instance_id]
        row.current_page = f"{position.tutorial.title} · {position.page.title}"
        row.current_page_id = position.page_id
    ticks: dict[int, dict[int, datetime]] = defaultdict(dict)
    for user_id, step_id, at in StepCompletion.objects.filter(user__in=owners, step__in=step_ids).values_list(
        "user_id", "step_id", "completed_at"
    ):
        if step_id not in checked:  # a tick on a checked step does not count (tutorials.progress)
            ticks[user_id][step_id] = at
    for instance_id, step_id, at in StepVerification.objects.filter(
        instance__in=rows, step__in=checked
    ).values_list("instance_id", "step_id", "verified_at"):
        rows[instance_id].verified.add(step_id)
        rows[instance_id].step_done_at[step_id] = at
    # The newest run of each checked step per instance: failed if that one failed.
    latest: dict[tuple[int, int], str] = {}
    for instance_id, step_id, result in (
        CheckRun.objects.filter(instance__in=rows, step__in=checked, trial=False)
        .order_by("started_at", "id")
        .values_list("instance_id", "step_id", "result")
    ):
        latest[(instance_id, step_id)] = result
    for (instance_id, step_id), result in latest.items():
        if result == CheckRun.Result.FAILED:
            rows[instance_id].failed_checks.append(by_id[step_id].label)
    for instance_id, name, has_vnc, has_serial in InstanceMachine.objects.filter(
        instance__in=rows
    ).values_list("instance_id", "name", "has_vnc", "has_serial_console"):
        rows[instance_id].machines.append({"name": name, "vnc": has_vnc, "serial": has_serial})
    watched = set(
        ConsoleWatch.objects.filter(instance__in=rows, ended_at__isnull=True).values_list(
            "instance_id", flat=True
        )
    )

    stuck_after = timedelta(minutes=stuck_minutes)
    out_rows = []
    for row in rows.values():
        instance = row.instance
        for step_id, at in ticks.get(instance.owner_id, {}).items():
            row.step_done_at[step_id] = at
        row.done = set(row.step_done_at)
        moments = [
            at for at in row.step_done_at.values() if instance.started_at is None or at >= instance.started_at
        ]
        row.last_progress_at = max([*moments, instance.started_at or instance.created_at])
        row.watched_now = instance.pk in watched
        out_rows.append(
            _row_dict(row, now=now, total=len(steps), checks=len(checked), stuck_after=stuck_after)
        )
    return ClassState(
        rows=out_rows,
        steps=_step_summary(steps, rows.values(), by_id),
        actions=_recent_actions(scope),
        totals={
            "students": len(out_rows),
            "stuck": sum(r["stuck"] for r in out_rows),
            "failed": sum(r["failed"] for r in out_rows),
            "finished": sum(r["finished"] for r in out_rows),
        },
    )


def _row_dict(row: StudentRow, *, now: datetime, total: int, checks: int, stuck_after: timedelta) -> dict:
    instance = row.instance
    status = instance.status
    running = status == LabInstance.Status.RUNNING
    finished = bool(total) and len(row.done) >= total
    failed = status == LabInstance.Status.FAILED or bool(row.failed_checks)
    idle_progress = now - row.last_progress_at if row.last_progress_at else timedelta(0)
    seconds_left = None
    if instance.expires_at is not None and instance.is_active:
        seconds_left = max(0, int((instance.expires_at - now).total_seconds()))
    return {
        "instance": instance.pk,
        "student": instance.owner.get_username(),
        "student_name": instance.owner.get_full_name(),
        "lab": instance.lab.slug,
        "status": status,
        "status_label": LabInstance.Status(status).label,
        "pending": instance.pending_action,
        "seconds_left": seconds_left,
        "expires_at": instance.expires_at.isoformat() if instance.expires_at else None,
        "last_activity_at": instance.last_activity_at.isoformat() if instance.last_activity_at else None,
        "last_progress_at": row.last_progress_at.isoformat() if row.last_progress_at else None,
        "current_page": row.current_page,
        "steps_done": len(row.done),
        "steps_total": total,
        "checks_passed": len(row.verified),
        "checks_total": checks,
        "failed_checks": sorted(row.failed_checks),
        "stuck": running and not finished and idle_progress >= stuck_after,
        "failed": failed,
        "finished": finished,
        "active": instance.is_active,
        "watched_now": row.watched_now,
        "machines": row.machines,
        "error": instance.last_error,
    }


def _step_summary(steps: list[StepInfo], rows: Any, by_id: dict[int, StepInfo]) -> list[dict]:
    rows = list(rows)
    # A student reached a step when they did it or a later step of the tutorial, or have its page
    # (or a later one) open.
    page_position = {s.page_id: s.page_position for s in steps}
    summary = []
    for step in steps:
        reached = passed = 0
        minutes: list[float] = []
        for row in rows:
            at_page = page_position.get(row.current_page_id) if row.current_page_id else None
            later_done = any(
                by_id[d].tutorial_id == step.tutorial_id and by_id[d].index >= step.index for d in row.done
            )
            is_done = step.id in row.done
            if is_done or later_done or (at_page is not None and at_page >= step.page_position):
                reached += 1
            if is_done:
                passed += 1
                started = row.instance.started_at or row.instance.created_at
                done_at = row.step_done_at[step.id]
                if done_at >= started:
                    minutes.append((done_at - started).total_seconds() / 60)
        summary.append(
            {
                "step": step.id,
                "label": step.label,
                "checked": step.checked,
                "reached": reached,
                "passed": passed,
                "median_minutes": round(statistics.median(minutes), 1) if minutes else None,
            }
        )
    return summary


def _recent_actions(scope: ClassScope) -> list[dict]:
    """The newest actions and console watches on the scope's labs, newest first."""
    lab_ids = [lab.pk for lab in scope.labs]
    actions = (
        ClassAction.objects.filter(lab__in=lab_ids)
        .select_related("actor", "instance__owner")
        .order_by("-created_at", "-id")[:RECENT_ACTIONS]
    )
    entries = [
        {
            "at": action.created_at.isoformat(),
            "actor": action.actor.get_username(),
            "kind": action.kind,
            "kind_label": action.get_kind_display(),
            "student": action.instance.owner.get_username() if action.instance else "",
            "detail": action.detail,
            "error": action.error,
        }
        for action in actions
    ]
    watches = (
        ConsoleWatch.objects.filter(instance__lab__in=lab_ids)
        .select_related("observer", "instance__owner")
        .order_by("-started_at", "-id")[:RECENT_ACTIONS]
    )
    for watch in watches:
        seconds = watch.seconds
        entries.append(
            {
                "at": watch.started_at.isoformat(),
                "actor": watch.observer.get_username(),
                "kind": ClassAction.Kind.WATCH,
                "kind_label": ClassAction.Kind.WATCH.label,
                "student": watch.instance.owner.get_username(),
                "detail": f"{watch.machine_name} {'screen' if watch.kind == 'vnc' else 'terminal'}, "
                + ("watching now" if seconds is None else f"{seconds} s"),
                "error": "",
            }
        )
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return entries[:RECENT_ACTIONS]
