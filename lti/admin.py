from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import ngettext

from lti.models import (
    ContextMembership,
    GradeLink,
    Platform,
    PlatformIdentity,
    ResourceLink,
    ScoreSubmission,
    ToolKey,
)


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    list_display = ["name", "issuer", "client_id", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "issuer", "client_id"]
    fieldsets = [
        (None, {"fields": ["name", "is_active"]}),
        (
            "Values the platform shows for the tool",
            {
                "fields": [
                    "issuer",
                    "client_id",
                    "deployment_ids",
                    "auth_login_url",
                    "auth_token_url",
                    "auth_audience",
                ]
            },
        ),
        ("The platform's public key: the URL, or the key itself", {"fields": ["keyset_url", "public_key"]}),
    ]


@admin.register(ToolKey)
class ToolKeyAdmin(admin.ModelAdmin):
    """Read-only: keys are made by `manage.py lti_rotate_keys`; the private key is never shown."""

    list_display = ["kid", "created_at", "retired_at"]
    fields = ["kid", "public_key", "created_at", "retired_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolKey | None = None) -> bool:
        return False


@admin.register(PlatformIdentity)
class PlatformIdentityAdmin(admin.ModelAdmin):
    """Changing the user links a platform account to an existing local account."""

    list_display = ["sub", "platform", "user", "last_launch_at"]
    list_filter = ["platform"]
    search_fields = ["sub", "user__username", "user__email"]
    raw_id_fields = ["user"]
    readonly_fields = ["platform", "sub", "created_at", "last_launch_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ContextMembership)
class ContextMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "context_title", "platform", "is_instructor", "updated_at"]
    list_filter = ["platform", "is_instructor"]
    search_fields = ["context_id", "context_title", "user__username"]
    raw_id_fields = ["user"]


@admin.register(ResourceLink)
class ResourceLinkAdmin(admin.ModelAdmin):
    list_display = ["__str__", "platform", "lab", "tutorial", "updated_at"]
    list_filter = ["platform"]
    search_fields = ["title", "resource_link_id", "context_id"]
    readonly_fields = ["platform", "resource_link_id", "context_id"]


@admin.register(GradeLink)
class GradeLinkAdmin(admin.ModelAdmin):
    list_display = ["user", "resource_link", "tutorial", "last_sent_score", "last_sent_at"]
    list_filter = ["platform"]
    raw_id_fields = ["user", "resource_link"]
    readonly_fields = [
        "last_sent_score",
        "last_sent_activity_progress",
        "last_sent_grading_progress",
        "last_sent_timestamp",
        "last_sent_at",
    ]


@admin.register(ScoreSubmission)
class ScoreSubmissionAdmin(admin.ModelAdmin):
    list_display = ["grade_link", "score_given", "activity_progress", "status", "attempts", "next_attempt_at"]
    list_filter = ["status"]
    actions = ["send_again"]
    readonly_fields = [field.name for field in ScoreSubmission._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Send again (failed scores)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[ScoreSubmission]) -> None:
        count = queryset.filter(status=ScoreSubmission.Status.FAILED).update(
            status=ScoreSubmission.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        queued = ngettext("%(count)d score queued", "%(count)d scores queued", count) % {"count": count}
        self.message_user(request, f"{queued} again for send_grades.", messages.SUCCESS)
