"""REST views of tutorials, their pages and steps, progress, and uploaded media. Thin: rendering
happens when a page is saved (tutorials.models), variables come from tutorials.variables, progress
from tutorials.progress, upload rules and deletion from tutorials.media_deletion."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from laborchestrator.api.exceptions import InUseError
from laborchestrator.api.permissions import IsStaff, IsStaffOrReadOnly
from laborchestrator.api.throttles import StepCheckThrottle
from laborchestrator.inputs import IdField, parse_id
from labs import lifecycle
from labs.models import LabInstance
from tutorials.api.serializers import (
    CheckOutcomeSerializer,
    CheckRequestSerializer,
    CheckRunSerializer,
    PageSerializer,
    ProgressSerializer,
    StaffCheckRunSerializer,
    StaffPageSerializer,
    StaffStepSerializer,
    StaffTutorialDetailSerializer,
    StepSerializer,
    TutorialDetailSerializer,
    TutorialMediaSerializer,
    TutorialMediaUploadSerializer,
    TutorialSerializer,
)
from tutorials.checking import CheckRefused, step_check_run
from tutorials.media_deletion import media_delete, media_references
from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage
from tutorials.progress import Progress, StepIsChecked, step_tick, step_untick, tutorial_progress
from tutorials.variables import TutorialContext

INSTANCE_PARAMETER = OpenApiParameter(
    "instance",
    OpenApiTypes.INT,
    description="One of your lab instances: fills in `{{ vm.<name>.ip/user/password }}` from it "
    "(IP addresses as the cluster reports them, when it can be read).",
)
USER_PARAMETER = OpenApiParameter(
    "user", OpenApiTypes.INT, description="Instructors: whose progress (default: your own)."
)
TUTORIAL_SLUG = OpenApiParameter("tutorial_slug", OpenApiTypes.STR, OpenApiParameter.PATH)
CRUD_ACTIONS = ("list", "retrieve", "create", "update", "partial_update", "destroy")


def _query_id(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    object_id = parse_id(value)
    if object_id is None:
        raise ValidationError({name: [IdField.default_error_messages["invalid"]]})
    return object_id


def _requested_instance(request: Request) -> LabInstance | None:
    """`?instance=<id>`: one of the user's lab instances (any, for staff); 404 for anyone else's."""
    instance_id = _query_id(request, "instance")
    if instance_id is None:
        return None
    instances = LabInstance.objects.visible_to(request.user).prefetch_related("machines")
    return get_object_or_404(instances, pk=instance_id)


def tutorial_context_for(request: Request, instance: LabInstance | None = None) -> TutorialContext:
    """The variables of the requesting user and, with `?instance=<id>`, of that instance of theirs."""
    user = request.user
    instance = instance or _requested_instance(request)
    if instance is None:
        return TutorialContext.for_user(user)
    ips: dict[str, str] = {}
    if instance.status in (LabInstance.Status.RUNNING, LabInstance.Status.PAUSED):
        # As the cluster's watch last recorded them: a tutorial reads only the database.
        ips = {machine.name: machine.ip_address for machine in instance.machines.all() if machine.ip_address}
    return TutorialContext.for_instance(user, instance, ips)


def _record_activity(*, user: Any, tutorial: Tutorial) -> None:
    """Working through a tutorial keeps the student's running lab of it from idling out."""
    instances = LabInstance.objects.filter(
        owner=user,
        lab__tutorials=tutorial,
        status__in=(LabInstance.Status.RUNNING, LabInstance.Status.PAUSED),
    )
    for instance in instances:
        lifecycle.instance_touch(instance=instance)


class TutorialViewSet(viewsets.ModelViewSet):
    """Tutorials: students see published ones, instructors all; only instructors write them.

    The detail has the ordered pages and steps as HTML with the variables filled in for you (and
    for one of your lab instances with `?instance=<id>`), your progress, and for instructors the
    Markdown source.
    """

    lookup_field = "slug"
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Tutorial]:
        tutorials = Tutorial.objects.visible_to(self.request.user).prefetch_related("labs")
        if self.action == "retrieve":
            steps = Prefetch("steps", queryset=Step.objects.order_by("order", "id"))
            pages = TutorialPage.objects.order_by("order", "id").prefetch_related(steps)
            tutorials = tutorials.prefetch_related(Prefetch("pages", queryset=pages))
        return tutorials

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action != "retrieve":
            return TutorialSerializer
        return StaffTutorialDetailSerializer if self.request.user.is_staff else TutorialDetailSerializer

    @extend_schema(parameters=[INSTANCE_PARAMETER])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tutorial = self.get_object()
        instance = _requested_instance(request)
        progress = tutorial_progress(request.user, tutorial, instance=instance)
        context = {
            **self.get_serializer_context(),
            "tutorial_context": tutorial_context_for(request, instance),
            "progress": progress,
            "locked_page_ids": () if request.user.is_staff else _locked_page_ids(tutorial, progress),
        }
        return Response(self.get_serializer_class()(tutorial, context=context).data)

    @extend_schema(parameters=[USER_PARAMETER], responses=ProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, slug: str | None = None) -> Response:
        """Your progress in this tutorial (ticked step ids, percent); instructors: anyone's with `?user=`."""
        tutorial = self.get_object()
        user = request.user
        user_id = _query_id(request, "user")
        if user_id is not None and user_id != user.pk:
            if not user.is_staff:
                raise PermissionDenied("Only instructors may read another user's progress.")
            user = get_object_or_404(get_user_model(), pk=user_id)
        data = ProgressSerializer.data_for(user, tutorial_progress(user, tutorial))
        return Response(ProgressSerializer(data).data)


class CheckNotRunnable(APIException):
    """A check refused before it ran (no check, not your lab, one already running: 409)."""

    default_code = "check_not_runnable"

    def __init__(self, detail: str, *, status_code: int) -> None:
        super().__init__(detail)
        self.status_code = status_code


class StepTickRefused(APIException):
    status_code = 409
    default_code = "step_is_checked"


def _locked_page_ids(tutorial: Tutorial, progress: Progress) -> set[int]:
    """With `checks_gate_pages`, every page after the first one whose checks have not all passed."""
    if not tutorial.checks_gate_pages:
        return set()
    locked: set[int] = set()
    blocked = False
    for page in tutorial.pages.all():  # prefetched in reading order
        if blocked:
            locked.add(page.pk)
        checked = {step.pk for step in page.steps.all()} & progress.checked_step_ids
        blocked = blocked or not checked <= progress.verified_step_ids
    return locked


class TutorialChildViewSet(viewsets.ModelViewSet):
    """Pages or steps of one tutorial; students read those of published tutorials."""

    permission_classes = [IsStaffOrReadOnly]
    pagination_class = None

    def get_tutorial(self) -> Tutorial:
        if not hasattr(self, "_tutorial"):
            tutorials = Tutorial.objects.visible_to(self.request.user)
            self._tutorial = tutorials.filter(slug=self.kwargs["tutorial_slug"]).first()
            if self._tutorial is None:
                raise NotFound("No such tutorial.")
        return self._tutorial

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and "tutorial_slug" in self.kwargs:
            context["tutorial"] = self.get_tutorial()
            context["tutorial_context"] = TutorialContext.for_user(self.request.user)
        return context


@extend_schema_view(**{name: extend_schema(parameters=[TUTORIAL_SLUG]) for name in CRUD_ACTIONS})
class TutorialPageViewSet(TutorialChildViewSet):
    def get_queryset(self) -> QuerySet[TutorialPage]:
        if getattr(self, "swagger_fake_view", False):
            return TutorialPage.objects.none()
        return self.get_tutorial().pages.prefetch_related("steps")

    def get_serializer_class(self) -> type[BaseSerializer]:
        return StaffPageSerializer if self.request.user.is_staff else PageSerializer

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.save(tutorial=self.get_tutorial())


@extend_schema_view(**{name: extend_schema(parameters=[TUTORIAL_SLUG]) for name in CRUD_ACTIONS})
class TutorialStepViewSet(TutorialChildViewSet):
    def get_queryset(self) -> QuerySet[Step]:
        if getattr(self, "swagger_fake_view", False):
            return Step.objects.none()
        return Step.objects.filter(page__tutorial=self.get_tutorial()).order_by(
            "page__order", "page_id", "order", "id"
        )

    def get_serializer_class(self) -> type[BaseSerializer]:
        return StaffStepSerializer if self.request.user.is_staff else StepSerializer

    @extend_schema(
        methods=["POST", "DELETE"],
        summary="Tick (POST) or untick (DELETE) a step",
        description="Both are idempotent and answer with your progress in the tutorial.",
        request=None,
        parameters=[TUTORIAL_SLUG],
        responses=ProgressSerializer,
    )
    @action(detail=True, methods=["post", "delete"], permission_classes=[IsAuthenticated])
    def tick(self, request: Request, tutorial_slug: str = "", pk: str | None = None) -> Response:
        step = self.get_object()
        tutorial = self.get_tutorial()
        if request.method == "POST":
            try:
                step_tick(user=request.user, step=step)
            except StepIsChecked as error:
                raise StepTickRefused(str(error)) from error
            _record_activity(user=request.user, tutorial=tutorial)
        else:
            step_untick(user=request.user, step=step)
        data = ProgressSerializer.data_for(request.user, tutorial_progress(request.user, tutorial))
        return Response(ProgressSerializer(data).data)

    @extend_schema(
        summary="Run the step's check on one of your lab instances",
        description="Runs the check's script on the machine it names, in your instance, and answers "
        "with the result and one line to show: `passed` (the step is now verified on this instance), "
        "`failed` (press again once fixed), `not_running` (the machine is not running: not a failed "
        "check), `error` (it could not run: SSH refused or timed out, the time-out, a lost "
        "connection) or `cancelled` (the lab stopped meanwhile). 409 while another check runs on the "
        "instance, 429 when checking too often. Instructors may `trial` a check on an instance they "
        "started: the answer then has the output and exit status, and verifies nothing.",
        request=CheckRequestSerializer,
        parameters=[TUTORIAL_SLUG],
        responses={200: CheckOutcomeSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[IsAuthenticated],
        throttle_classes=[StepCheckThrottle],
    )
    def check(self, request: Request, tutorial_slug: str = "", pk: str | None = None) -> Response:
        step = self.get_object()
        tutorial = self.get_tutorial()
        asked = CheckRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        instances = LabInstance.objects.visible_to(request.user).select_related("lab")
        instance = get_object_or_404(instances, pk=asked.validated_data["instance"])
        trial = asked.validated_data["trial"]
        try:
            run = step_check_run(user=request.user, instance=instance, step=step, trial=trial)
        except CheckRefused as refused:
            raise CheckNotRunnable(refused.message, status_code=refused.status) from refused
        if not trial:
            _record_activity(user=request.user, tutorial=tutorial)
        progress = tutorial_progress(request.user, tutorial, instance=instance)
        run_serializer = StaffCheckRunSerializer if request.user.is_staff else CheckRunSerializer
        return Response(
            {
                "run": run_serializer(run).data,
                "verified": step.pk in progress.verified_step_ids,
                "progress": ProgressSerializer(ProgressSerializer.data_for(request.user, progress)).data,
            }
        )


@extend_schema_view(
    create=extend_schema(
        description="Multipart form data: `title` and `file` (at most `TUTORIAL_MEDIA_MAX_BYTES`, "
        "10 MB by default). A refused file is not stored.",
        request={"multipart/form-data": TutorialMediaUploadSerializer},
        responses={201: TutorialMediaSerializer},
    ),
    partial_update=extend_schema(description="Changes the title only; a file is never replaced (400)."),
    destroy=extend_schema(
        description="Deletes the upload and its stored file. While a page or step still refers to "
        "its URL the answer is 409 naming them, unless `force=true`.",
        parameters=[
            OpenApiParameter(
                "force", OpenApiTypes.BOOL, description="Delete even if pages still refer to the file."
            )
        ],
        responses={204: None, 409: OpenApiResponse(description="Still referred to by pages or steps.")},
    ),
)
class TutorialMediaViewSet(viewsets.ModelViewSet):
    """Images and files for tutorials, newest first; instructors only. Upload `title` and `file` as
    multipart form data, then paste `markdown` into a page or step."""

    permission_classes = [IsStaff]
    # No PUT: a whole replacement would mean replacing the file, which PATCH refuses too.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[TutorialMedia]:
        return TutorialMedia.objects.select_related("uploaded_by").order_by("-uploaded_at", "-id")

    def get_serializer_class(self) -> type[BaseSerializer]:
        return TutorialMediaUploadSerializer if self.action == "create" else TutorialMediaSerializer

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.save(uploaded_by=self.request.user)

    def perform_destroy(self, instance: TutorialMedia) -> None:
        force = self.request.query_params.get("force", "").lower() in ("1", "true", "yes")
        places = [] if force else media_references(instance)
        if places:
            raise InUseError(
                f"Still referred to by {'; '.join(places)}. Edit them first, or delete with force=true."
            )
        media_delete(media=instance)
