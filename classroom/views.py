"""The class view's pages and the JSON its script polls; the students' side (their banner, the page
they have open). Thin: who may see what is classroom.access, the data classroom.roster, the actions
classroom.services."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from classroom import access
from classroom.models import StudentMessage
from classroom.roster import DEFAULT_STUCK_MINUTES, ClassScope, class_state
from classroom.services import ActionRefused, class_action, position_record
from labs.models import Lab, LabInstance
from tutorials.models import StepCompletion, StepVerification, Tutorial, TutorialPage
from tutorials.variables import TutorialContext, fill_variables
from vncproxy.models import ConsoleWatch

ScopeArgs = dict[str, Any]
RECENT_MESSAGES = 20


def _scope(request: HttpRequest, kwargs: ScopeArgs) -> ClassScope:
    if "slug" in kwargs:
        return access.lab_scope(request.user, kwargs["slug"])
    if "class_id" in kwargs:
        return access.class_scope(request.user, kwargs["class_id"])
    return access.course_scope(request.user, kwargs["platform_id"], kwargs["context_id"])


def _urls(kwargs: ScopeArgs) -> dict[str, str]:
    prefix = {"slug": "classroom:lab", "class_id": "classroom:class"}.get(
        next(iter(kwargs)), "classroom:course"
    )
    return {
        "state": reverse(f"{prefix}-state", kwargs=kwargs),
        "actions": reverse(f"{prefix}-actions", kwargs=kwargs),
        "export": reverse(f"{prefix}-export", kwargs=kwargs),
        "studentTutorial": reverse("classroom:student-tutorial", args=[0]),
        "instancePage": reverse("portal:instance", args=[0]),
    }


def _stuck_minutes(request: HttpRequest) -> int:
    try:
        return max(1, min(24 * 60, int(request.GET.get("stuck", DEFAULT_STUCK_MINUTES))))
    except ValueError:
        return DEFAULT_STUCK_MINUTES


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    labs = list(Lab.objects.taught_by(request.user))
    classes = access.classes_taught(request.user)
    courses = access.courses_taught(request.user)
    if not labs and not classes and not courses:
        raise Http404("You teach no labs, classes or courses.")
    return render(request, "classroom/index.html", {"labs": labs, "classes": classes, "courses": courses})


def _scoped(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    def wrapped(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return view(request, _scope(request, kwargs), kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return login_required(wrapped)


@_scoped
@require_GET
def class_page(request: HttpRequest, scope: ClassScope, kwargs: ScopeArgs) -> HttpResponse:
    config = {"urls": _urls(kwargs), "stuckMinutes": DEFAULT_STUCK_MINUTES, "pollSeconds": 3}
    return render(request, "classroom/class.html", {"scope": scope, "config": config})


@_scoped
@require_GET
def class_state_json(request: HttpRequest, scope: ClassScope, kwargs: ScopeArgs) -> HttpResponse:
    state = class_state(scope, stuck_minutes=_stuck_minutes(request))
    return JsonResponse(
        {
            "now": timezone.now().isoformat(),
            "rows": state.rows,
            "steps": state.steps,
            "actions": state.actions,
            "totals": state.totals,
        }
    )


CSV_COLUMNS = [
    "student", "student_name", "lab", "instance", "status_label", "seconds_left", "last_activity_at",
    "last_progress_at", "current_page", "steps_done", "steps_total", "checks_passed", "checks_total",
    "failed_checks", "stuck", "failed", "finished",
]  # fmt: skip


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        value = "; ".join(value)
    # A spreadsheet runs a cell that starts with one of these as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@_scoped
@require_GET
def class_export(request: HttpRequest, scope: ClassScope, kwargs: ScopeArgs) -> HttpResponse:
    state = class_state(scope, stuck_minutes=_stuck_minutes(request))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = kwargs.get("slug") or (f"class-{kwargs['class_id']}" if "class_id" in kwargs else "course")
    response["Content-Disposition"] = f'attachment; filename="class-{name}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in state.rows:
        writer.writerow([_csv_cell(row[column]) for column in CSV_COLUMNS])
    return response


@_scoped
@require_POST
def class_actions(request: HttpRequest, scope: ClassScope, kwargs: ScopeArgs) -> HttpResponse:
    try:
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise ValueError
        instance_ids = [int(i) for i in body.get("instances") or []]
        minutes = int(body.get("minutes") or 0)
        kind, text = str(body.get("action") or ""), str(body.get("text") or "")
    except (ValueError, TypeError):
        return JsonResponse({"error": "The request is not a valid action."}, status=400)
    try:
        results = class_action(
            actor=request.user,
            labs=scope.labs,
            student_ids=scope.student_ids,
            instance_ids=instance_ids,
            kind=kind,
            minutes=minutes,
            text=text,
        )
    except ActionRefused as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(
        {"results": [{"instance": r.instance_id, "ok": r.ok, "message": r.message} for r in results]}
    )


@login_required
@require_GET
def student_tutorial(request: HttpRequest, pk: int) -> HttpResponse:
    """The student's tutorial as they see it, read-only: their ticks and checks, their page marked."""
    instance = access.instance_for_instructor(request.user, pk)
    student = instance.owner
    context = TutorialContext.for_instance(student, instance, ips={})
    done = set(StepCompletion.objects.filter(user=student).values_list("step_id", flat=True))
    verified = set(StepVerification.objects.filter(instance=instance).values_list("step_id", flat=True))
    position = getattr(instance, "tutorial_position", None)
    tutorials = []
    for tutorial in (
        Tutorial.objects.visible_to(student)
        .filter(labs=instance.lab)
        .prefetch_related("pages__steps__step_check")
    ):
        pages = []
        for page in tutorial.pages.all():
            steps = [
                {
                    "html": mark_safe(fill_variables(step.text_html, context)),  # noqa: S308  # sanitised when saved
                    "checked": hasattr(step, "step_check"),
                    "done": (step.pk in verified) if hasattr(step, "step_check") else (step.pk in done),
                }
                for step in page.steps.all()
            ]
            pages.append(
                {
                    "page": page,
                    "html": mark_safe(fill_variables(page.body_html, context)),  # noqa: S308  # sanitised when saved
                    "steps": steps,
                    "current": position is not None and position.page_id == page.pk,
                }
            )
        tutorials.append({"tutorial": tutorial, "pages": pages})
    return render(request, "classroom/student_tutorial.html", {"instance": instance, "tutorials": tutorials})


# --- The student's side -------------------------------------------------------------------------------


def _own_instance(request: HttpRequest, pk: int) -> LabInstance:
    return get_object_or_404(LabInstance.objects.filter(owner=request.user), pk=pk)


@login_required
@require_GET
def student_notices(request: HttpRequest, pk: int) -> HttpResponse:
    """Messages from instructors and who watched the student's consoles, for their instance page."""
    instance = _own_instance(request, pk)
    messages = StudentMessage.objects.filter(instance=instance).select_related("sender").order_by("-id")
    watches = ConsoleWatch.objects.filter(instance=instance).select_related("observer")[:RECENT_MESSAGES]
    return JsonResponse(
        {
            "messages": [
                {"id": m.pk, "from": m.sender.get_full_name() or m.sender.get_username(), "text": m.text,
                 "at": m.created_at.isoformat()}
                for m in reversed(messages[:RECENT_MESSAGES])
            ],
            "watches": [
                {"by": w.observer.get_full_name() or w.observer.get_username(), "machine": w.machine_name,
                 "kind": w.kind, "started_at": w.started_at.isoformat(), "seconds": w.seconds,
                 "now": w.ended_at is None}
                for w in watches
            ],
        }
    )  # fmt: skip


@login_required
@require_POST
def student_position(request: HttpRequest, pk: int) -> HttpResponse:
    """The student's page reports which tutorial page is open."""
    instance = _own_instance(request, pk)
    try:
        body = json.loads(request.body or b"{}")
        tutorial_slug, page_id = str(body["tutorial"]), int(body["page"])
    except (ValueError, TypeError, KeyError):
        return JsonResponse({"error": "Expected a tutorial slug and a page id."}, status=400)
    tutorial = get_object_or_404(
        Tutorial.objects.visible_to(request.user).filter(labs=instance.lab), slug=tutorial_slug
    )
    page = get_object_or_404(TutorialPage, pk=page_id, tutorial=tutorial)
    position_record(user=request.user, instance=instance, tutorial=tutorial, page=page)
    return HttpResponse(status=204)
