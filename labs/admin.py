from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.timesince import timesince

from accounts.admin_access import InstructorAdmin, InstructorInline
from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, ReadySchedule, VMImage


@admin.register(VMImage)
class VMImageAdmin(InstructorAdmin):
    list_display = ("name", "container_disk_image", "default_username", "has_vnc", "has_serial_console")
    list_filter = ("has_vnc", "has_serial_console")
    search_fields = ("name", "description", "container_disk_image")


class LabMachineFormSet(BaseInlineFormSet):
    """Checks that need all machines of the lab at once."""

    def clean(self) -> None:
        super().clean()
        kept = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
        ]
        if sum(1 for data in kept if data.get("opens_first")) > 1:
            raise ValidationError("Only one machine of a lab can open first.")
        if self.instance.published and not kept:
            raise ValidationError("A published lab needs at least one machine.")


class LabMachineInline(InstructorInline, admin.TabularInline):
    model = LabMachine
    formset = LabMachineFormSet
    extra = 0
    min_num = 0
    fields = ("order", "name", "image", "cores", "memory_mib", "opens_first", "cloud_init_user_data")
    autocomplete_fields = ("image",)


class ReadyScheduleInline(InstructorInline, admin.TabularInline):
    model = ReadySchedule
    extra = 0
    fields = ("count", "starts_at", "duration_minutes")
    verbose_name = "ready instances at a time"
    verbose_name_plural = "ready instances at a time (e.g. 30 ready at 9:00 for 90 minutes)"


@admin.register(Lab)
class LabAdmin(InstructorAdmin):
    list_display = ("name", "slug", "published", "machine_count", "active_instance_count", "lifetime_minutes")
    list_filter = ("published",)
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",), "namespace_prefix": ("name",)}
    inlines = [LabMachineInline, ReadyScheduleInline]
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "published", "owner")}),
        (
            "Limits",
            {
                "fields": (
                    "instances_per_user",
                    "lifetime_minutes",
                    "idle_timeout_minutes",
                    "namespace_prefix",
                ),
            },
        ),
        ("Ready instances", {"fields": ("ready_instances",)}),
    )

    def get_changeform_initial_data(self, request):
        # A new lab belongs to whoever creates it, so it shows in their class view at once.
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _machine_count=Count("machines", distinct=True),
                _active_instance_count=Count(
                    "instances", filter=Q(instances__status__in=LabInstance.ACTIVE_STATUSES), distinct=True
                ),
            )
        )

    @admin.display(description="machines", ordering="_machine_count")
    def machine_count(self, lab: Lab) -> int:
        return lab._machine_count

    @admin.display(description="active instances", ordering="_active_instance_count")
    def active_instance_count(self, lab: Lab) -> int:
        return lab._active_instance_count


class InstanceMachineInline(InstructorInline, admin.TabularInline):
    model = InstanceMachine
    extra = 0
    can_delete = False
    # The generated password is left out on purpose: the owner reads it on the instance page.
    fields = ("name", "image_reference", "cores", "memory_mib", "username", "has_vnc", "has_serial_console")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LabInstance)
class LabInstanceAdmin(InstructorAdmin):
    """Instances are started and stopped by students and the lifecycle service, not edited here."""

    list_display = ("id", "lab", "owner", "status", "age", "expires_at", "namespace", "short_error")
    list_filter = ("status", "lab", "pooled")
    search_fields = ("owner__username", "owner__email", "lab__name", "namespace")
    list_select_related = ("lab", "owner")
    date_hierarchy = "created_at"
    inlines = [InstanceMachineInline]
    readonly_fields = (
        "lab",
        "owner",
        "namespace",
        "status",
        "created_at",
        "started_at",
        "last_activity_at",
        "expires_at",
        "stopped_at",
        "last_error",
        "last_error_plain",
        "pending_action",
        "pending_since",
        "pooled",
        "handed_over_at",
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Viewable, never editable: status changes must go through labs.lifecycle.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="age", ordering="created_at")
    def age(self, instance: LabInstance) -> str:
        return timesince(instance.created_at, timezone.now())

    @admin.display(description="last error")
    def short_error(self, instance: LabInstance) -> str:
        return instance.last_error[:80]
