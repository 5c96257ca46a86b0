"""Start-up checks of the LTI settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

GRADING_PROGRESS_CHOICES = ("FullyGraded", "Pending")


@register()
def lti_settings(app_configs: Any, **kwargs: Any) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    if settings.LTI_PARTIAL_GRADING_PROGRESS not in GRADING_PROGRESS_CHOICES:
        problems.append(
            Error(
                f"LTI_PARTIAL_GRADING_PROGRESS must be one of {', '.join(GRADING_PROGRESS_CHOICES)}.",
                id="lti.E001",
            )
        )
    if not settings.SITE_URL.startswith("https://") and getattr(settings, "PRODUCTION", False):
        problems.append(
            Warning(
                "SITE_URL is not https://: platforms will refuse the tool's URLs, and the launch cookie "
                "cannot be SameSite=None.",
                id="lti.W001",
            )
        )
    return problems
