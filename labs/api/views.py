"""REST views of images, labs and lab instances. Thin: state changes go through `labs.lifecycle`,
whose errors become HTTP answers in laborchestrator/api/exceptions.py."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from laborchestrator.api.exceptions import (
    ClusterUnavailableError,
    ConsoleNotRunningError,
    InvalidTransitionError,
    LabNotAvailableError,
    LimitReachedError,
)
from laborchestrator.api.permissions import IsStaff, IsStaffOrReadOnly
from laborchestrator.api.throttles import ConsoleTicketThrottle, InstanceStartThrottle
from laborchestrator.ratelimit import Limit, Rate, RateLimited, take_place
from labs import lifecycle
from labs.api.filters import InstanceFilter
from labs.api.serializers import (
    InstanceDetailSerializer,
    InstanceSerializer,
    InstanceStartSerializer,
    LabMachineSerializer,
    LabSerializer,
    StaffLabMachineSerializer,
    StaffLabSerializer,
    TicketRequestSerializer,
    TicketSerializer,
    VMImageSerializer,
)
from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from tutorials.api.serializers import LabProgressSerializer
from tutorials.models import Tutorial
from tutorials.progress import Progress, progress_by_user
from vncproxy.tickets import ticket_issue


def _progress_numbers(progress: Progress) -> dict[str, int]:
    return {"ticked": progress.ticked, "total": progress.total, "percent": progress.percent}


def _error_response(error: type, description: str) -> OpenApiResponse:
    return OpenApiResponse(description=f"{description} (`code`: {error.default_code})")


CLUSTER_DOWN = {503: _error_response(ClusterUnavailableError, "The cluster cannot be reached or refused")}

# LabSerializer's fields before `machines` and `tutorials`; the timestamps come after them.
LAB_COLUMNS = (
    "id", "slug", "name", "description", "published", "instances_per_user", "lifetime_minutes",
    "idle_timeout_minutes", "namespace_prefix",
)  # fmt: skip
# LabMachineSerializer's fields, and the columns they come from.
MACHINE_COLUMNS = {
    "id": "id",
    "name": "name",
    "image": "image_id",
    "image_name": "image__name",
    "cores": "cores",
    "memory_mib": "memory_mib",
    "has_vnc": "image__has_vnc",
    "has_serial_console": "image__has_serial_console",
    "order": "order",
    "opens_first": "opens_first",
}
STAFF_MACHINE_COLUMNS = {**MACHINE_COLUMNS, "cloud_init_user_data": "cloud_init_user_data"}
_TIMESTAMP = serializers.DateTimeField(read_only=True)


def lab_list_representation(labs: list[dict[str, Any]], *, user: Any) -> list[dict[str, Any]]:
    """What LabSerializer (StaffLabSerializer for staff) gives for `labs` (rows of LAB_COLUMNS and the
    timestamps), from
    two more queries and no model instances: the catalog's hot path, where building 250 model
    objects and DRF's field loop cost most of a page (bench/api_throughput.py). The same answer,
    byte for byte (tests/api/test_lab_list_response.py)."""
    lab_ids = [lab["id"] for lab in labs]
    columns = STAFF_MACHINE_COLUMNS if user.is_staff else MACHINE_COLUMNS
    rows = LabMachine.objects.filter(lab_id__in=lab_ids).values_list("lab_id", *columns.values())
    machines: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lab_id, *values in rows:
        machines[lab_id].append(dict(zip(columns, values, strict=True)))
    tutorials: dict[int, list[dict[str, Any]]] = defaultdict(list)
    visible = Tutorial.objects.visible_to(user).filter(labs__in=lab_ids)
    for lab_id, tutorial_id, slug, title in visible.values_list("labs", "id", "slug", "title"):
        tutorials[lab_id].append({"id": tutorial_id, "slug": slug, "title": title})
    return [
        {
            **{column: lab[column] for column in LAB_COLUMNS},
            "machines": machines[lab["id"]],
            "tutorials": tutorials[lab["id"]],
            "created_at": _TIMESTAMP.to_representation(lab["created_at"]),
            "updated_at": _TIMESTAMP.to_representation(lab["updated_at"]),
        }
        for lab in labs
    ]


class VMImageViewSet(viewsets.ModelViewSet):
    """VM images: every signed-in user may read them; instructors create, change and delete them."""

    queryset = VMImage.objects.all()
    serializer_class = VMImageSerializer
    permission_classes = [IsStaffOrReadOnly]


class LabViewSet(viewsets.ModelViewSet):
    """Labs with their machines and linked tutorials. Students see published labs; instructors all,
    and only they may create, change or delete labs."""

    lookup_field = "slug"
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Lab]:
        user = self.request.user
        return Lab.objects.visible_to(user).prefetch_related(
            Prefetch("machines", queryset=LabMachine.objects.select_related("image")),
            Prefetch(
                "tutorials",
                queryset=Tutorial.objects.visible_to(user).only("id", "slug", "title"),
                to_attr="visible_tutorials",
            ),
        )

    def get_serializer_class(self) -> type[BaseSerializer]:
        return StaffLabSerializer if self.request.user.is_staff else LabSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        labs = self.filter_queryset(Lab.objects.visible_to(request.user))
        labs = labs.values(*LAB_COLUMNS, "created_at", "updated_at")
        page = self.paginate_queryset(labs)
        if page is None:  # pagination switched off
            return Response(lab_list_representation(list(labs), user=request.user))
        return self.get_paginated_response(lab_list_representation(page, user=request.user))

    def perform_create(self, serializer: BaseSerializer) -> None:
        lab = serializer.save(owner=self.request.user)  # its creator's class view shows it
        lab.visible_tutorials = []

    @extend_schema(
        summary="Everyone's progress in the lab's tutorials", responses=LabProgressSerializer(many=True)
    )
    @action(detail=True, methods=["get"], permission_classes=[IsStaff])
    def progress(self, request: Request, slug: str | None = None) -> Response:
        """Instructors: per user who ran the lab or ticked a step of its tutorials, their progress in
        each tutorial linked to it."""
        lab = self.get_object()
        tutorials = list(Tutorial.objects.filter(labs=lab).order_by("title"))
        users = (
            get_user_model()
            .objects.filter(Q(lab_instances__lab=lab) | Q(step_completions__step__page__tutorial__labs=lab))
            .distinct()
            .order_by("username")
        )
        page = self.paginate_queryset(users)
        by_tutorial = {t.pk: progress_by_user(t, user_ids=[u.pk for u in page]) for t in tutorials}
        rows = [
            {
                "user": user,
                "tutorials": [
                    {"tutorial": t.slug, **_progress_numbers(by_tutorial[t.pk][user.pk])} for t in tutorials
                ],
            }
            for user in page
        ]
        return self.get_paginated_response(LabProgressSerializer(rows, many=True).data)

    def perform_update(self, serializer: BaseSerializer) -> None:
        lab = serializer.save()
        lab.visible_tutorials = list(Tutorial.objects.visible_to(self.request.user).filter(labs=lab))


LAB_SLUG = OpenApiParameter("lab_slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="Lab slug.")


@extend_schema_view(
    **{
        name: extend_schema(parameters=[LAB_SLUG])
        for name in ("list", "retrieve", "create", "update", "partial_update", "destroy")
    }
)
class LabMachineViewSet(viewsets.ModelViewSet):
    """The machines of one lab, by name. Instructors add, change and remove them; the rules for names
    and sizes are the model's and come back as field errors."""

    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"
    permission_classes = [IsStaffOrReadOnly]
    pagination_class = None

    def get_lab(self) -> Lab:
        if not hasattr(self, "_lab"):
            labs = Lab.objects.visible_to(self.request.user)
            self._lab = labs.filter(slug=self.kwargs["lab_slug"]).first()
            if self._lab is None:
                raise NotFound("No such lab.")
        return self._lab

    def get_queryset(self) -> QuerySet[LabMachine]:
        if getattr(self, "swagger_fake_view", False):
            return LabMachine.objects.none()
        return self.get_lab().machines.select_related("image")

    def get_serializer_class(self) -> type[BaseSerializer]:
        return StaffLabMachineSerializer if self.request.user.is_staff else LabMachineSerializer

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and "lab_slug" in self.kwargs:
            context["lab"] = self.get_lab()
        return context

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.save(lab=self.get_lab())


class InstanceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Lab instances. Students see only their own (another user's instance is a 404); instructors
    see all and may filter by user, lab and status."""

    filterset_class = InstanceFilter

    def get_queryset(self) -> QuerySet[LabInstance]:
        if getattr(self, "swagger_fake_view", False):
            return LabInstance.objects.none()
        instances = LabInstance.objects.visible_to(self.request.user).select_related("lab", "owner")
        if self.action != "list":
            instances = instances.prefetch_related(
                Prefetch("machines", queryset=InstanceMachine.objects.order_by("order", "id"))
            )
        return instances

    def get_serializer_class(self) -> type[BaseSerializer]:
        return {
            "list": InstanceSerializer,
            "create": InstanceStartSerializer,
            "ticket": TicketRequestSerializer,
        }.get(self.action, InstanceDetailSerializer)

    def get_throttles(self) -> list:
        if self.action == "create":
            return [InstanceStartThrottle()]
        if self.action == "ticket":
            return [ConsoleTicketThrottle()]
        return super().get_throttles()

    def _detail(self, instance: LabInstance, *, status_code: int = status.HTTP_200_OK, **context) -> Response:
        serializer = InstanceDetailSerializer(instance, context={**self.get_serializer_context(), **context})
        return Response(serializer.data, status=status_code)

    @extend_schema(
        summary="List lab instances",
        description="The stored status of each instance; the cluster is not asked (see the detail for that).",
    )
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="An instance with its machines' state in the cluster",
        description="The status and the machines' phase, IP address, paused flag and readiness as the "
        "cluster's watch last recorded them (this request asks the cluster nothing), with how current "
        "that is. Includes each machine's login and the websocket URLs of its consoles.",
        responses={200: InstanceDetailSerializer},
    )
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return self._detail(self.get_object())

    @extend_schema(
        summary="Ask the cluster now",
        description="Reads the machines' state from the cluster once and records it: for when the "
        "status is not current (`status_current` false). At most one a few seconds per instance.",
        request=None,
        responses={
            200: InstanceDetailSerializer,
            429: OpenApiResponse(description="Refreshed a moment ago; see `Retry-After`."),
            **CLUSTER_DOWN,
        },
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        instance = self.get_object()
        limit = Limit(key=f"instance-refresh:{instance.pk}", rate=Rate.parse(settings.LABS_REFRESH_RATE))
        try:
            take_place([limit])
        except RateLimited as refused:
            raise Throttled(wait=refused.wait, detail="This lab was refreshed a moment ago.") from refused
        lifecycle.instance_refresh(instance=instance)
        return self._detail(instance)

    @extend_schema(
        summary="Start a lab",
        request=InstanceStartSerializer,
        responses={
            201: InstanceDetailSerializer,
            409: OpenApiResponse(
                description=f"A limit on running instances, with the rule (`code`: "
                f"{LimitReachedError.default_code}), or the lab cannot be started "
                f"(`code`: {LabNotAvailableError.default_code})"
            ),
            429: OpenApiResponse(description="Too many starts; see `Retry-After`."),
            **CLUSTER_DOWN,
        },
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = lifecycle.instance_start(user=request.user, lab=serializer.validated_data["lab"])
        instance = self.get_queryset().get(pk=instance.pk)
        return self._detail(instance, status_code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Stop an instance",
        description="Deletes the instance's machines. 202 while the cluster is still removing them "
        "(status `stopping`), 200 once stopped. Stopping a stopped instance is harmless.",
        responses={200: InstanceDetailSerializer, 202: InstanceDetailSerializer, **CLUSTER_DOWN},
    )
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        instance = lifecycle.instance_stop(instance=self.get_object())
        stopping = instance.status == LabInstance.Status.STOPPING
        code = status.HTTP_202_ACCEPTED if stopping else status.HTTP_200_OK
        return self._detail(instance, status_code=code)

    @extend_schema(
        summary="Pause every machine",
        request=None,
        responses={
            200: InstanceDetailSerializer,
            409: _error_response(InvalidTransitionError, "Only a running instance can be paused"),
            **CLUSTER_DOWN,
        },
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._detail(lifecycle.instance_pause(instance=self.get_object()))

    @extend_schema(
        summary="Resume every machine",
        request=None,
        responses={
            200: InstanceDetailSerializer,
            409: _error_response(InvalidTransitionError, "Only a paused instance can be resumed"),
            **CLUSTER_DOWN,
        },
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._detail(lifecycle.instance_resume(instance=self.get_object()))

    @extend_schema(
        summary="A ticket to open a machine's console",
        description="A single-use ticket, valid for about a minute, bound to you, this instance, the "
        "machine and the kind of stream. Open the returned `websocket_url` with it before it expires.",
        request=TicketRequestSerializer,
        parameters=[OpenApiParameter("machine_name", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={
            201: TicketSerializer,
            404: OpenApiResponse(description="No such instance or machine"),
            409: _error_response(ConsoleNotRunningError, "The instance is not running"),
            429: OpenApiResponse(description="Too many tickets; see `Retry-After`."),
        },
    )
    @action(detail=True, methods=["post"], url_path=r"machines/(?P<machine_name>[a-z0-9-]+)/ticket")
    def ticket(self, request: Request, pk: str | None = None, machine_name: str = "") -> Response:
        instance = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        kind = serializer.validated_data["kind"]
        value, expires_at = ticket_issue(
            user=request.user, instance=instance, machine_name=machine_name, kind=kind
        )
        path = f"/ws/instances/{instance.pk}/machines/{machine_name}/{kind}?ticket={value}"
        websocket_url = request.build_absolute_uri(path).replace("http", "ws", 1)
        data = {"ticket": value, "expires_at": expires_at, "websocket_url": websocket_url}
        return Response(TicketSerializer(data).data, status=status.HTTP_201_CREATED)
