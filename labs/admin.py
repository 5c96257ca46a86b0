from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.timesince import timesince

from accounts.admin_access import InstructorAdmin, InstructorInline
from laborchestrator.sealing import Unsealable
from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, ReadySchedule, VMImage
from labs.registry import RegistryCheckFailed, host_resolves, pinned, registry_host, resolve_digest
from labs.validators import validate_oci_reference


class VMImageForm(forms.ModelForm):
    """The reference must name a registry host that resolves (field errors); whether the registry
    has the image is checked after the save and only warned about (VMImageAdmin.save_model)."""

    pull_secret_password = forms.CharField(
        label="registry password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored one. Stored sealed; never shown again.",
    )
    clear_pull_secret = forms.BooleanField(
        label="forget the registry credentials", required=False, help_text="Pull the image anonymously."
    )

    class Meta:
        model = VMImage
        fields = [
            "name",
            "description",
            "container_disk_image",
            "default_username",
            "has_vnc",
            "has_serial_console",
            "has_ssh_server",
            "min_memory_mib",
            "min_cores",
            "kernel_path",
            "initrd_path",
            "kernel_args",
            "pull_secret_username",
        ]

    def clean_container_disk_image(self) -> str:
        reference = self.cleaned_data["container_disk_image"].strip()
        validate_oci_reference(reference)  # the format first, then what it names
        host = registry_host(reference)
        if host is None:
            raise ValidationError(
                "Name the registry, e.g. registry.example.org/team/disk:1.0: a reference without one "
                "resolves to docker.io, a registry nobody here controls.",
                code="no_registry_host",
            )
        if not host_resolves(host):
            raise ValidationError(
                "The registry host %(host)s is unknown (its name does not resolve).",
                code="unknown_registry_host",
                params={"host": host},
            )
        return reference

    def clean(self) -> dict:
        data = super().clean()
        if data.get("pull_secret_password") and not data.get("pull_secret_username"):
            self.add_error("pull_secret_username", "A registry password needs its user name.")
        return data

    def save(self, commit: bool = True) -> VMImage:
        image = super().save(commit=False)
        if self.cleaned_data.get("clear_pull_secret"):
            image.pull_secret_username = ""
            image.set_pull_password("")
        elif self.cleaned_data.get("pull_secret_password"):
            image.set_pull_password(self.cleaned_data["pull_secret_password"])
        if commit:
            image.save()
        return image


def _check_reference(request, image: VMImage) -> str | None:
    """The digest the reference resolves to now, or None after warning the instructor why not."""
    try:
        return resolve_digest(image.container_disk_image, credentials=image.pull_credentials())
    except (RegistryCheckFailed, Unsealable) as error:
        messages.warning(
            request,
            f"{image.name}: could not check {image.container_disk_image} in its registry ({error}). "
            "Saved all the same: machines of this image fail to start until the registry serves it.",
        )
        return None


@admin.register(VMImage)
class VMImageAdmin(InstructorAdmin):
    form = VMImageForm
    list_display = (
        "name",
        "container_disk_image",
        "pinned",
        "default_username",
        "has_vnc",
        "has_serial_console",
    )
    list_filter = ("has_vnc", "has_serial_console")
    search_fields = ("name", "description", "container_disk_image")
    actions = ["pin_to_digest"]

    @admin.display(description="pinned by digest", boolean=True)
    def pinned(self, image: VMImage) -> bool:
        return image.is_pinned

    def save_model(self, request, obj: VMImage, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        digest = _check_reference(request, obj)
        if digest is not None and not obj.is_pinned:
            messages.info(
                request,
                f"{obj.name}: {obj.container_disk_image} is {digest} today. A tag can be moved to other "
                "content; pin the image by digest (the “Pin to digest” action) so every machine "
                "runs exactly what you tried.",
            )

    @admin.action(description="Pin to digest (resolve the tag now)")
    def pin_to_digest(self, request, queryset) -> None:
        for image in queryset:
            digest = _check_reference(request, image)
            if digest is None:
                continue
            image.container_disk_image = pinned(image.container_disk_image, digest)
            image.save(update_fields=["container_disk_image"])
            messages.success(request, f"{image.name} pinned: {image.container_disk_image}")


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
    fields = (
        "order",
        "name",
        "kind",
        "image",
        "container_image",
        "cores",
        "memory_mib",
        "opens_first",
        "cloud_init_user_data",
        "command",
        "args",
        "env",
        "shell_user",
        "ports",
    )
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
    fields = (
        "name",
        "kind",
        "image_reference",
        "cores",
        "memory_mib",
        "username",
        "has_vnc",
        "has_serial_console",
        "phase",
        "pull_progress",
        "problem_message",
    )
    readonly_fields = fields

    @admin.display(description="image pull")
    def pull_progress(self, machine: InstanceMachine) -> str:
        return machine.pull_message if machine.pull_percent is not None else ""

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
