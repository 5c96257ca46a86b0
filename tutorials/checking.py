"""Step checks: run a step's script on the student's lab machine and record what it proved.

`step_check_run` is the one place a check runs (the Check button, an author's trial). It refuses
what cannot run (no check, another lab, a check already running on the instance), answers "the
machine is not running" without trying when the lab is not running, runs the script through
`labs.machine_exec` (nothing a student typed reaches its command line), logs the run (`CheckRun`, and a
log line with user, step, result and duration) and, when it passed, verifies the step on that instance
(`StepVerification`). `check_results` is what one student's checks say on one instance, for pages
that show them (the instructor's class view).

No database transaction is open while the script runs: the run is recorded first (claiming the
instance: one running check per instance, by a unique constraint), then the machine is called, then
the outcome is written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import IntegrityError
from django.utils import timezone

from labs import machine_exec
from labs.models import InstanceMachine, LabInstance
from tutorials.models import CheckRun, Step, StepCheck, StepVerification

logger = logging.getLogger("tutorials.checks")

Result = CheckRun.Result
# A run still `running` this long after it started lost its process (killed, restarted): it ends
# as an error, so the instance can be checked again.
STALE_AFTER = timedelta(seconds=120 + 60)
SHOWN_LINE_MAX = 300
FAIL_PREFIX = "FAIL:"


class CheckRefused(Exception):
    """The check cannot be run as asked; `message` says why in plain words."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CheckAlreadyRunning(CheckRefused):
    status = 409


@dataclass(frozen=True)
class StepCheckResult:
    """One checked step of a tutorial, as one instance stands."""

    step: Step
    verified: bool
    last_result: str  # a CheckRun.Result, or "" when never run
    last_message: str
    last_run_at: datetime | None
    runs: int


def failure_line(stdout: str) -> str:
    """What a failed check shows: its last `FAIL:` line, else "" (the caller falls back)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(FAIL_PREFIX):
            return line[len(FAIL_PREFIX) :].strip()[:SHOWN_LINE_MAX]
    return ""


def _last_line(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1][:SHOWN_LINE_MAX] if lines else ""


def _shown_on_failure(check: StepCheck, stdout: str) -> str:
    return failure_line(stdout) or check.failure_message or _last_line(stdout) or "The check did not pass."


def _refuse_unless_runnable(*, user: Any, instance: LabInstance, step: Step, trial: bool) -> StepCheck:
    check = getattr(step, "step_check", None)
    if check is None:
        raise CheckRefused("This step has no check.")
    if trial:
        if not user.is_staff:
            raise CheckRefused("Only instructors may try checks.")
        if instance.owner_id != user.pk:
            raise CheckRefused("Try checks on a lab instance you started yourself.")
    elif instance.owner_id != user.pk:
        raise CheckRefused("Only the student who started this lab can run its checks.")
    if not step.page.tutorial.labs.filter(pk=instance.lab_id).exists():
        raise CheckRefused("This step's tutorial does not belong to this lab.")
    return check


def _not_running_message(instance: LabInstance) -> str | None:
    Status = LabInstance.Status
    if instance.status == Status.RUNNING:
        return None
    if instance.status == Status.PAUSED:
        return "The lab is paused: resume it, then check again."
    if instance.status in (Status.REQUESTED, Status.STARTING):
        return "The machines are still starting: check again when they run."
    return "The machine is not running: start the lab again to check this step."


def _claim(*, user: Any, instance: LabInstance, step: Step, trial: bool) -> CheckRun:
    stale = timezone.now() - STALE_AFTER
    CheckRun.objects.filter(instance=instance, result=Result.RUNNING, started_at__lt=stale).update(
        result=Result.ERROR, finished_at=timezone.now(), detail="Interrupted: the process running it ended."
    )
    try:
        return CheckRun.objects.create(instance=instance, step=step, user=user, trial=trial)
    except IntegrityError as error:
        raise CheckAlreadyRunning("A check is already running on this lab: wait for its result.") from error


def _machine_access(instance: LabInstance, check: StepCheck) -> machine_exec.MachineAccess | str:
    """How to reach the check's machine, or the staff-facing reason it cannot be reached."""
    machine = InstanceMachine.objects.filter(instance=instance, name=check.machine).first()
    if machine is None:
        return f"The lab has no machine named {check.machine!r} (the check names it)."
    if machine.kind == "container":
        # Through pods/exec: no SSH server or key needed (labs/machine_exec.py).
        return machine_exec.MachineAccess(
            namespace=instance.namespace or "",
            machine=machine.name,
            private_key="",
            host_public_key="",
            kind="container",
        )
    if not machine.has_ssh_server or not machine.ssh_host_public_key:
        return f"Checks need an SSH server in the image: the machine {check.machine} has none."
    key = getattr(instance, "check_key", None)
    if key is None:
        return "This instance has no check key (it was started before checks existed, or it stopped)."
    return machine_exec.MachineAccess(
        namespace=instance.namespace or "",
        machine=machine.name,
        private_key=key.private_key,
        host_public_key=machine.ssh_host_public_key,
    )


def step_check_run(*, user: Any, instance: LabInstance, step: Step, trial: bool = False) -> CheckRun:
    """Run `step`'s check on `instance` for `user` and return the finished run.

    Raises CheckRefused (or CheckAlreadyRunning) when it cannot run at all; every other outcome,
    the machine not running included, is a recorded run. A passing run (not a trial) verifies the step
    on the instance.
    """
    check = _refuse_unless_runnable(user=user, instance=instance, step=step, trial=trial)
    run = _claim(user=user, instance=instance, step=step, trial=trial)
    started = time.monotonic()
    instance.refresh_from_db(fields=["status"])
    not_running = _not_running_message(instance)
    access = _machine_access(instance, check) if not_running is None else None
    if not_running is not None:
        _finish(run, started, Result.NOT_RUNNING, message=not_running)
    elif isinstance(access, str):
        _finish(
            run, started, Result.ERROR, message="This check cannot run. Tell your instructor.", detail=access
        )
    else:
        assert access is not None
        _execute(run, started, check, access, instance)
    if run.result == Result.PASSED and not trial:
        StepVerification.objects.get_or_create(instance=instance, step=step)
    logger.info(
        "check run %s: user=%s instance=%s step=%s trial=%s result=%s duration_ms=%s",
        run.pk,
        user.pk,
        instance.pk,
        step.pk,
        trial,
        run.result,
        run.duration_ms,
    )
    return run


def _execute(
    run: CheckRun,
    started: float,
    check: StepCheck,
    access: machine_exec.MachineAccess,
    instance: LabInstance,
) -> None:
    stopped = sync_to_async(lambda: _stopped(instance))
    try:
        result = async_to_sync(machine_exec.run_script)(
            access, check.script, timeout=check.timeout_seconds, shell=check.shell, cancelled=stopped
        )
    except machine_exec.ExecFailed as failure:
        outcome = {
            machine_exec.Problem.NOT_RUNNING: Result.NOT_RUNNING,
            machine_exec.Problem.CANCELLED: Result.CANCELLED,
        }.get(failure.problem, Result.ERROR)
        if outcome == Result.ERROR and _stopped(instance):
            outcome = Result.CANCELLED  # the machine went away because the lab stopped
            failure = machine_exec.ExecFailed(
                failure.problem, failure.detail, "The check was cancelled: the lab stopped while it ran."
            )
        _finish(run, started, outcome, message=failure.plain, detail=failure.detail)
        return
    output = result.stdout + (f"\n--- stderr ---\n{result.stderr}" if result.stderr else "")
    if result.truncated:
        output = "[only the end of the output is kept]\n" + output
    if result.exit_status == 0:
        message = check.success_message or "Verified."
        _finish(run, started, Result.PASSED, message=message, exit_status=0, output=output)
    else:
        message = _shown_on_failure(check, result.stdout)
        _finish(run, started, Result.FAILED, message=message, exit_status=result.exit_status, output=output)


def _stopped(instance: LabInstance) -> bool:
    """Paused, stopping or gone: a check running now cannot finish meaningfully."""
    return not LabInstance.objects.filter(pk=instance.pk, status=LabInstance.Status.RUNNING).exists()


def _finish(run: CheckRun, started: float, result: str, **fields: Any) -> None:
    run.result = result
    run.finished_at = timezone.now()
    run.duration_ms = int((time.monotonic() - started) * 1000)
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(
        update_fields=[
            "result",
            "finished_at",
            "duration_ms",
            "message",
            "detail",
            "output",
            "exit_status",
        ]
    )


def check_results(*, instance: LabInstance) -> list[StepCheckResult]:
    """One student's check results on one instance: every checked step of the tutorials of its lab,
    whether it is verified there, and its latest run (authors' trials left out). Three queries."""
    steps = list(
        Step.objects.filter(page__tutorial__labs=instance.lab, step_check__isnull=False)
        .select_related("page__tutorial")
        .order_by("page__tutorial__title", "page__order", "page_id", "order", "id")
        .distinct()
    )
    verified = set(
        StepVerification.objects.filter(instance=instance, step__in=steps).values_list("step_id", flat=True)
    )
    latest: dict[int, CheckRun] = {}
    counts: dict[int, int] = {}
    runs = CheckRun.objects.filter(instance=instance, step__in=steps, trial=False).order_by(
        "started_at", "id"
    )
    for run in runs:
        latest[run.step_id] = run
        counts[run.step_id] = counts.get(run.step_id, 0) + 1
    return [
        StepCheckResult(
            step=step,
            verified=step.pk in verified,
            last_result=latest[step.pk].result if step.pk in latest else "",
            last_message=latest[step.pk].message if step.pk in latest else "",
            last_run_at=latest[step.pk].started_at if step.pk in latest else None,
            runs=counts.get(step.pk, 0),
        )
        for step in steps
    ]
