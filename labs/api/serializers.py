from __future__ import annotations

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import UserSummarySerializer
from laborchestrator.api.serializers import ModelCleanMixin
from laborchestrator.inputs import parse_id
from labs.lifecycle import PROVISIONED_STATUSES, MachineStatus, stored_machine_status
from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from labs.watch_health import WatchHealth, watch_health
from vncproxy.models import ConsoleTicket


class VMImageSerializer(ModelCleanMixin, serializers.ModelSerializer):
    class Meta:
        model = VMImage
        fields = [
            "id",
            "name",
            "description",
            "container_disk_image",
            "default_username",
            "has_vnc",
            "has_serial_console",
            "min_memory_mib",
            "min_cores",
        ]


class LabMachineSerializer(serializers.ModelSerializer):
    """A machine as students see it: no cloud-init user data (it may hold the answers)."""

    image_name = serializers.SerializerMethodField(help_text="The VM image's name; null for a container.")
    has_vnc = serializers.SerializerMethodField()
    has_serial_console = serializers.SerializerMethodField(
        help_text="A serial console (VMs); container machines have a terminal instead."
    )

    class Meta:
        model = LabMachine
        fields = [
            "id",
            "name",
            "kind",
            "image",
            "image_name",
            "cores",
            "memory_mib",
            "has_vnc",
            "has_serial_console",
            "order",
            "opens_first",
        ]
        read_only_fields = fields

    def get_image_name(self, machine: LabMachine) -> str | None:
        return machine.image.name if machine.image is not None else None

    def get_has_vnc(self, machine: LabMachine) -> bool:
        return machine.image is not None and machine.image.has_vnc

    def get_has_serial_console(self, machine: LabMachine) -> bool:
        return machine.image is not None and machine.image.has_serial_console


class StaffLabMachineSerializer(ModelCleanMixin, LabMachineSerializer):
    """A machine as instructors edit it, under /api/labs/<slug>/machines/."""

    class Meta(LabMachineSerializer.Meta):
        fields = [
            *LabMachineSerializer.Meta.fields,
            "cloud_init_user_data",
            "container_image",
            "command",
            "args",
            "env",
            "shell_user",
            "ports",
        ]
        read_only_fields = ["id", "image_name", "has_vnc", "has_serial_console"]

    def instance_for_clean(self, attrs: dict[str, Any]) -> LabMachine:
        machine = super().instance_for_clean(attrs)
        machine.lab = self.context["lab"]
        return machine


class TutorialLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    slug = serializers.SlugField(read_only=True)
    title = serializers.CharField(read_only=True)


class LabSerializer(ModelCleanMixin, serializers.ModelSerializer):
    machines = LabMachineSerializer(many=True, read_only=True)
    # `visible_tutorials` is prefetched by the view with only the tutorials the user may see.
    tutorials = TutorialLinkSerializer(source="visible_tutorials", many=True, read_only=True)

    class Meta:
        model = Lab
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "published",
            "instances_per_user",
            "lifetime_minutes",
            "idle_timeout_minutes",
            "namespace_prefix",
            "ready_instances",
            "machines",
            "tutorials",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class StaffLabSerializer(LabSerializer):
    machines = StaffLabMachineSerializer(many=True, read_only=True)


# --- Instances -----------------------------------------------------------------------------------------


def _for_staff(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return bool(getattr(getattr(request, "user", None), "is_staff", False))


class InstanceSerializer(serializers.ModelSerializer):
    """An instance with its stored status (lists do not ask the cluster)."""

    lab = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    lab_name = serializers.CharField(source="lab.name", read_only=True)
    owner = UserSummarySerializer(read_only=True)
    last_error = serializers.SerializerMethodField(
        help_text="Why the instance failed: the cluster's exact reason for staff, plain words for others."
    )
    pending_action = serializers.SerializerMethodField(
        help_text="`pause` or `resume` while the cluster has not yet confirmed it (the status already "
        "shows the state asked for), else null."
    )

    class Meta:
        model = LabInstance
        fields = [
            "id",
            "lab",
            "lab_name",
            "owner",
            "status",
            "created_at",
            "started_at",
            "last_activity_at",
            "expires_at",
            "stopped_at",
            "last_error",
            "pending_action",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_last_error(self, instance: LabInstance) -> str:
        if _for_staff(self.context):
            return instance.last_error
        return instance.last_error_plain or instance.last_error

    @extend_schema_field({"type": "string", "enum": ["pause", "resume"], "nullable": True})
    def get_pending_action(self, instance: LabInstance) -> str | None:
        return instance.pending_action or None


class ConsoleUrlsSerializer(serializers.Serializer):
    vnc = serializers.CharField(allow_null=True, help_text="Websocket URL of the VNC stream, if offered.")
    serial = serializers.CharField(
        allow_null=True, help_text="Websocket URL of the serial console, if offered."
    )


NOT_RUNNING = MachineStatus(name="", phase="", ip_address="", paused=False, ready=False)


class InstanceMachineSerializer(serializers.ModelSerializer):
    """A machine of an instance: its login, consoles, and its state in the cluster as last recorded
    (labs.watcher; no cluster call)."""

    phase = serializers.SerializerMethodField(
        help_text="The VM's phase in the cluster; null if the cluster has not reported it yet."
    )
    ip_address = serializers.SerializerMethodField()
    paused = serializers.SerializerMethodField()
    ready = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField(
        help_text="Why the machine does not run (yet), if the cluster says: image_unavailable, no_room, "
        "waiting_for_quota, refused, start_failed, stopped or not_ready; empty otherwise; null if not read."
    )
    message = serializers.SerializerMethodField(
        help_text="The reason in words: the cluster's exact reason and message for staff, plain words "
        "for others; null if not read."
    )
    pull_progress = serializers.SerializerMethodField(
        help_text="Percent of the machine's disk image downloaded while the cluster pulls it, where the "
        "cluster reports it (the embedded one does; KubeVirt does not); null otherwise."
    )
    consoles = serializers.SerializerMethodField()

    class Meta:
        model = InstanceMachine
        fields = [
            "name",
            "order",
            "opens_first",
            "cores",
            "memory_mib",
            "username",
            "password",
            "kind",
            "has_vnc",
            "has_serial_console",
            "phase",
            "ip_address",
            "paused",
            "ready",
            "reason",
            "message",
            "pull_progress",
            "consoles",
        ]
        read_only_fields = fields

    def _status(self, machine: InstanceMachine) -> MachineStatus | None:
        status = self.context.get("instance_status")
        if status not in PROVISIONED_STATUSES and status != LabInstance.Status.FAILED:
            return NOT_RUNNING  # stopped or not started yet: no machine runs
        # A failed instance's machines show what the cluster last said: why it failed.
        if machine.observed_at is None:
            return None
        return stored_machine_status(machine)

    @extend_schema_field(OpenApiTypes.STR)
    def get_phase(self, machine: InstanceMachine) -> str | None:
        status = self._status(machine)
        return status.phase if status else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_ip_address(self, machine: InstanceMachine) -> str | None:
        status = self._status(machine)
        return status.ip_address if status else None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_paused(self, machine: InstanceMachine) -> bool | None:
        status = self._status(machine)
        return status.paused if status else None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_ready(self, machine: InstanceMachine) -> bool | None:
        status = self._status(machine)
        return status.ready if status else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_reason(self, machine: InstanceMachine) -> str | None:
        status = self._status(machine)
        if status is None:
            return None
        return status.problem.code if status.problem else ""

    @extend_schema_field(OpenApiTypes.STR)
    def get_message(self, machine: InstanceMachine) -> str | None:
        status = self._status(machine)
        if status is None:
            return None
        if status.problem is None:
            if status.pull is not None:
                return status.pull.cluster_message if _for_staff(self.context) else status.pull.plain()
            return ""
        if _for_staff(self.context):
            return status.problem.detail(machine.name)
        return status.problem.plain(machine.name)

    @extend_schema_field(OpenApiTypes.INT)
    def get_pull_progress(self, machine: InstanceMachine) -> int | None:
        status = self._status(machine)
        return status.pull.percent if status and status.pull else None

    @extend_schema_field(ConsoleUrlsSerializer)
    def get_consoles(self, machine: InstanceMachine) -> dict[str, str | None]:
        def url(kind: str) -> str:
            path = f"/ws/instances/{machine.instance_id}/machines/{machine.name}/{kind}"
            request = self.context.get("request")
            if request is None:
                return path
            return request.build_absolute_uri(path).replace("http", "ws", 1)

        return {
            "vnc": url("vnc") if machine.has_vnc else None,
            "serial": url("serial") if machine.has_serial_console else None,
            # A container machine's shell (pods/exec through the console proxy).
            "terminal": url("terminal") if machine.kind == "container" else None,
        }


class InstanceDetailSerializer(InstanceSerializer):
    """An instance with its machines, their logins and their state as last recorded, and how current
    that is: the status comes from the cluster's watch, never from a call made for this request."""

    machines = InstanceMachineSerializer(many=True, read_only=True)
    status_as_of = serializers.SerializerMethodField(
        help_text="Until when the status and the machines' state are known to be true: about now while "
        "the cluster is watched, else when it last reported on this instance (null: never)."
    )
    status_current = serializers.SerializerMethodField(
        help_text="False when the status is the last known one (the cluster's watch is down or the "
        "cluster unreachable): `POST .../refresh/` asks the cluster once."
    )
    cluster_unreachable_since = serializers.SerializerMethodField(
        help_text="When the cluster stopped answering, during an outage; else null."
    )

    class Meta(InstanceSerializer.Meta):
        fields = [
            *InstanceSerializer.Meta.fields,
            "namespace",
            "machines",
            "status_as_of",
            "status_current",
            "cluster_unreachable_since",
        ]
        read_only_fields = fields

    def _health(self) -> WatchHealth:
        if "watch_health" not in self.context:
            self.context["watch_health"] = watch_health()
        return self.context["watch_health"]

    def to_representation(self, instance: LabInstance) -> dict[str, Any]:
        self.context["instance_status"] = instance.status
        return super().to_representation(instance)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_status_as_of(self, instance: LabInstance) -> str | None:
        moment = self._health().status_as_of(instance.observed_at)
        return serializers.DateTimeField().to_representation(moment) if moment else None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_status_current(self, instance: LabInstance) -> bool:
        return self._health().in_sync

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_cluster_unreachable_since(self, instance: LabInstance) -> str | None:
        since = self._health().unreachable_since
        return serializers.DateTimeField().to_representation(since) if since else None


# What SlugField accepts: a lab slug is never anything else, so nothing else reaches a query.
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "Lab id or slug"})
class LabReferenceField(serializers.RelatedField):
    """A lab by id or by slug, among the labs the requesting user may see."""

    default_error_messages = {"does_not_exist": "There is no lab {value!r} you can start."}

    def get_queryset(self):
        return Lab.objects.visible_to(self.context["request"].user)

    def to_internal_value(self, data: Any) -> Lab:
        queryset = self.get_queryset()
        lab_id = parse_id(data)
        if lab_id is not None:
            lab = queryset.filter(pk=lab_id).first()
        elif isinstance(data, str) and SLUG.fullmatch(data):
            lab = queryset.filter(slug=data).first()
        else:
            lab = None
        if lab is None:
            self.fail("does_not_exist", value=data)
        return lab

    def to_representation(self, value: Lab) -> str:
        return value.slug


class InstanceStartSerializer(serializers.Serializer):
    lab = LabReferenceField(help_text="The lab to start, by id or slug.")


class TicketRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ConsoleTicket.Kind.choices)


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Single-use; pass it as `?ticket=` when opening the websocket.")
    expires_at = serializers.DateTimeField()
    websocket_url = serializers.CharField(help_text="The console's websocket URL with the ticket in it.")
