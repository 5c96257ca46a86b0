"""LTI 1.3 records: the tool's keys, the platforms registered in the admin, who launched from where,
which lab a course activity opens, and the scores waiting to be sent to a gradebook.

Every platform-supplied identifier (`sub`, context and resource link ids) is scoped by its platform:
two Moodle sites may both have a user "2" or a course "3".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labs.models import Lab
from lti.key_formats import platform_key_set
from tutorials.models import Tutorial


class ToolKeyQuerySet(models.QuerySet):
    def current(self) -> ToolKeyQuerySet:
        """Keys not retired: the newest of them signs everything the tool sends."""
        return self.filter(retired_at__isnull=True)

    def published(self, *, now: datetime, grace: timedelta) -> ToolKeyQuerySet:
        """Keys in the JWKS: current ones and those retired less than `grace` ago.

        A platform may still hold a message signed just before a rotation, or have cached the old
        keyset; keeping the old public key for a while lets those verify.
        """
        return self.filter(Q(retired_at__isnull=True) | Q(retired_at__gt=now - grace))


class ToolKey(models.Model):
    """One RSA key pair of this tool. Made and rotated by `manage.py lti_rotate_keys`, never committed."""

    kid = models.CharField("key id", max_length=100, unique=True)
    private_key = models.TextField(help_text="PEM. Secret: never shown in the admin.")
    public_key = models.TextField(help_text="PEM.")
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = ToolKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "tool key"

    def __str__(self) -> str:
        return self.kid


def parse_deployment_ids(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


class Platform(models.Model):
    """A learning platform (a Moodle site, ...) registered with this tool: the values its admin shows
    after adding the tool."""

    name = models.CharField(max_length=200, help_text="For you, e.g. 'Moodle of the CS department'.")
    issuer = models.CharField(
        max_length=255, help_text="Moodle: 'Platform ID', the site's URL, e.g. https://moodle.example.org"
    )
    client_id = models.CharField("client ID", max_length=255, help_text="Moodle: 'Client ID'.")
    deployment_ids = models.TextField(
        "deployment IDs", help_text="One per line. Moodle: 'Deployment ID' (a number, e.g. 1)."
    )
    auth_login_url = models.URLField(
        "authentication request URL",
        max_length=1024,
        help_text="Moodle: 'Authentication request URL' (…/mod/lti/auth.php).",
    )
    auth_token_url = models.URLField(
        "access token URL", max_length=1024, help_text="Moodle: 'Access token URL' (…/mod/lti/token.php)."
    )
    auth_audience = models.CharField(
        "access token audience",
        max_length=1024,
        blank=True,
        help_text="Only if the platform names one; empty means the access token URL (Moodle).",
    )
    keyset_url = models.URLField(
        "public keyset URL",
        max_length=1024,
        blank=True,
        help_text="Moodle: 'Public keyset URL' (…/mod/lti/certs.php).",
    )
    public_key = models.TextField(
        "platform public key",
        blank=True,
        help_text="Instead of the keyset URL, when this server cannot reach it: the platform's public "
        "key (PEM) or its keyset (JSON).",
    )
    is_active = models.BooleanField(default=True, help_text="Inactive platforms cannot launch.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "client_id"], name="lti_platform_unique_client")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def deployment_id_list(self) -> list[str]:
        return parse_deployment_ids(self.deployment_ids)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not self.keyset_url and not self.public_key.strip():
            errors["keyset_url"] = "Give the platform's keyset URL or paste its public key."
        if self.public_key.strip():
            try:
                platform_key_set(self.public_key)
            except ValueError as error:
                errors["public_key"] = str(error)
        if not parse_deployment_ids(self.deployment_ids):
            errors["deployment_ids"] = "At least one deployment ID is needed."
        if errors:
            raise ValidationError(errors)


class PlatformIdentity(models.Model):
    """Which local user a platform's `sub` is. The admin may point an identity at an existing
    account to link the two (launches never do that by themselves, see lti/accounts.py)."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="identities")
    sub = models.CharField("subject (sub)", max_length=255)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_identities"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_launch_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "LTI identity"
        verbose_name_plural = "LTI identities"
        constraints = [models.UniqueConstraint(fields=["platform", "sub"], name="lti_identity_unique_sub")]

    def __str__(self) -> str:
        return f"{self.platform} / {self.sub} → {self.user}"


class ContextMembership(models.Model):
    """A user's role in a platform's course (LTI context), as of their last launch from it.

    Instructors of a context may see the progress of its learners here; nothing else follows from it.
    """

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="memberships")
    context_id = models.CharField(max_length=255)
    context_title = models.CharField(max_length=255, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_memberships"
    )
    is_instructor = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "context_id", "user"], name="lti_membership_unique_user"
            )
        ]

    def __str__(self) -> str:
        role = "instructor" if self.is_instructor else "learner"
        return f"{self.user} in {self.context_title or self.context_id} ({role})"


class ResourceLink(models.Model):
    """A course activity on a platform, and the lab (and tutorial) it opens."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="resource_links")
    resource_link_id = models.CharField(max_length=255)
    context_id = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    lab = models.ForeignKey(Lab, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tutorial = models.ForeignKey(Tutorial, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "resource_link_id"], name="lti_resource_link_unique_id"
            )
        ]

    def __str__(self) -> str:
        return self.title or self.resource_link_id


class LoginState(models.Model):
    """One OIDC login: the `state` sent to the platform and the `nonce` its id_token must carry.

    Kept in the database rather than the session because the launch arrives as a cross-site POST
    that may carry no session cookie, and may reach another replica. Used once: the launch that
    consumes it marks it, so a replayed id_token is refused.
    """

    state = models.CharField(max_length=100, unique=True)
    nonce = models.CharField(max_length=100)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    # The login initiation's parameters, to restart the launch in a new window when cookies are blocked.
    login_params = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"login to {self.platform_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class DeepLinkingRequest(models.Model):
    """An instructor picking a lab for a new activity: the platform's deep-linking settings, held
    between the launch and the pick. The random token in the pick page's URL authorises the pick,
    so it works inside a frame whose cookies the browser blocks."""

    token = models.CharField(max_length=64, unique=True)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    deployment_id = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    settings = models.JSONField(default=dict)
    context_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"deep linking by {self.user_id} at {self.created_at:%Y-%m-%d %H:%M}"


class GradeLink(models.Model):
    """Where a learner's progress in one activity goes: the platform's line item (gradebook column)
    for them, and what was last sent there."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    resource_link = models.ForeignKey(ResourceLink, on_delete=models.CASCADE, related_name="grade_links")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tutorial = models.ForeignKey(Tutorial, on_delete=models.CASCADE, related_name="+")
    lti_user_id = models.CharField("platform user id (sub)", max_length=255)
    lineitem_url = models.URLField(max_length=1024, blank=True)
    lineitems_url = models.URLField(max_length=1024, blank=True)
    scopes = models.JSONField(default=list)
    last_sent_score = models.FloatField(null=True, blank=True)
    last_sent_activity_progress = models.CharField(max_length=20, blank=True)
    last_sent_grading_progress = models.CharField(max_length=20, blank=True)
    last_sent_timestamp = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource_link", "user"], name="lti_grade_link_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.resource_link}"


class ScoreSubmission(models.Model):
    """A score to send: queued when progress changes, sent by `manage.py send_grades`.

    While it waits (`pending`) a newer change of the same learner's progress replaces its values,
    so a burst of ticks sends one score. `sending` rows are claimed by one worker; one whose worker
    died is claimed again after a lease.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        SKIPPED = "skipped", "skipped (already sent)"
        FAILED = "failed"

    grade_link = models.ForeignKey(GradeLink, on_delete=models.CASCADE, related_name="submissions")
    score_given = models.FloatField()
    score_maximum = models.FloatField(default=1.0)
    activity_progress = models.CharField(max_length=20)
    grading_progress = models.CharField(max_length=20)
    comment = models.CharField(max_length=200, blank=True)
    # When the progress changed: platforms (Moodle) refuse a score older than the one they hold.
    timestamp = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="lti_score_due")]

    def __str__(self) -> str:
        return f"{self.score_given:.2f} for {self.grade_link} ({self.status})"
