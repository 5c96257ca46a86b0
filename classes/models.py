"""Classes that students join without an LMS: with an access code (a sign-up link) or by an
instructor's CSV import, which hands out one-time sign-in links.

A class only groups people and labs: joining one never changes an account's rights (no code or link
makes anyone staff, and no link signs in a staff account).
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from labs.models import Lab

# Access codes: 12 characters from 32 letters and digits (60 bits), without 0/O/1/I/L, which people
# mistype when they copy a code from a projector.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12
MAX_CODE_USES = 10_000


def new_access_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_access_code(text: str) -> str:
    """What a student typed, as stored: case, spaces and hyphens do not matter."""
    return "".join(text.split()).replace("-", "").upper()


def token_digest(token: str) -> str:
    """One-time sign-in tokens are kept as this digest only: a database dump signs nobody in.
    (A plain hash suffices: the tokens are 256-bit random, nothing to brute-force.)"""
    return hashlib.sha256(token.encode()).hexdigest()


class ClassroomQuerySet(models.QuerySet):
    def managed_by(self, user) -> ClassroomQuerySet:
        """Instructors manage the classes they own; superusers manage all of them."""
        if user.is_superuser:
            return self
        if not user.is_staff:
            return self.none()
        return self.filter(owner=user)


class Classroom(models.Model):
    """A class: a name, its instructor, the labs it offers, and an access code students join with.

    (Called Classroom in code because `class` is a Python keyword; "class" everywhere users read.)
    The code is random and unguessable and kept in the clear so the instructor can show it again;
    wrong codes are rate-limited (classes.joining).
    """

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="classes_owned",
        help_text="The instructor who manages the class.",
    )
    labs = models.ManyToManyField(Lab, blank=True, related_name="classes", help_text="Labs the class offers.")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="ClassMembership", related_name="classes", blank=True
    )
    access_code = models.CharField(
        max_length=CODE_LENGTH, unique=True, default=new_access_code, editable=False
    )
    code_expires_at = models.DateTimeField(
        "code expires at", help_text="After this moment the code and sign-up link stop working."
    )
    code_max_uses = models.PositiveIntegerField(
        "maximum sign-ups",
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CODE_USES)],
        help_text="How many students may join with the code.",
    )
    code_uses = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ClassroomQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "class"
        verbose_name_plural = "classes"
        constraints = [
            models.CheckConstraint(
                condition=Q(code_uses__lte=F("code_max_uses")),
                name="classes_classroom_uses_within_max",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("classes:detail", args=[self.pk])

    @property
    def sign_up_path(self) -> str:
        return reverse("classes:join", args=[self.access_code])

    def clean(self) -> None:
        if self.code_max_uses is not None and self.code_max_uses < self.code_uses:
            raise ValidationError(
                {"code_max_uses": f"{self.code_uses} students have already joined with the code."}
            )

    def code_is_open(self, now=None) -> bool:
        now = now or timezone.now()
        return self.code_expires_at > now and self.code_uses < self.code_max_uses


class ClassMembership(models.Model):
    class Source(models.TextChoices):
        ACCESS_CODE = "code", "access code"
        IMPORT = "import", "CSV import"

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="class_memberships"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["classroom", "user"], name="classes_membership_unique_user_per_class"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.classroom}"


class SignInLink(models.Model):
    """A one-time sign-in link from a CSV import: single use, expiring, only its digest stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_links")
    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="sign_in_links")
    token_digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"sign-in link for {self.user}"
