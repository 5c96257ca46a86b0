"""Who a launch is: the local user of a platform's `sub`, and their role in the launch's course.

Decisions (README.md, "LTI 1.3"):
- A `sub` is only meaningful on its platform, so users are found through PlatformIdentity
  (platform + sub), never by `sub` alone.
- A launch never takes over an existing local account, not even one with the same email address:
  a platform's email claim is not proof that its user owns our account (a Moodle where users edit their
  own email would hand out any account). The new LTI user then keeps an empty email, and an admin can
  link the identity to the existing account in the admin if the person asks.
- LTI roles never make anyone `is_staff` (which would let them edit every lab). Instructors and
  administrators of a course get rights in that course only: choosing its labs (deep linking) and
  seeing its learners' progress. Everyone else is a student.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from lti.launch import Launch
from lti.models import ContextMembership, Platform, PlatformIdentity

logger = logging.getLogger("lti.accounts")

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
# Context roles that may act for the course, with their sub-roles (membership/Instructor#TeachingAssistant).
INSTRUCTOR_CONTEXT_ROLES = ("Instructor", "Administrator", "ContentDeveloper")
# Institution and system administrators of the platform (Moodle sends these for its site admins).
ADMINISTRATOR_ROLES = (
    LIS + "institution/person#Administrator",
    LIS + "system/person#Administrator",
    LIS + "system/person#SysAdmin",
)


def is_instructor_role(role: str) -> bool:
    if role in ADMINISTRATOR_ROLES:
        return True
    for name in INSTRUCTOR_CONTEXT_ROLES:
        if role in (name, LIS + "membership#" + name) or role.startswith(LIS + "membership/" + name + "#"):
            return True
    return False


def is_instructor(roles: Any) -> bool:
    return isinstance(roles, list) and any(
        isinstance(role, str) and is_instructor_role(role) for role in roles
    )


@dataclass(frozen=True)
class LaunchUser:
    user: Any
    is_instructor: bool
    membership: ContextMembership | None


def username_for(platform: Platform, sub: str) -> str:
    # Stable, short and unique whatever the sub looks like (up to 255 characters, any characters).
    digest = hashlib.sha256(f"{platform.pk}:{sub}".encode()).hexdigest()[:16]
    return f"lti-{platform.pk}-{digest}"


def user_for_launch(launch: Launch) -> LaunchUser:
    """Find or create the launch's user, refresh their name and email, record their course role."""
    platform, claims = launch.platform, launch.claims
    user = _find_or_create_user(platform, launch.sub, claims)
    _update_profile(user, claims)
    instructor = is_instructor(launch.claim("roles"))
    context = launch.claim("context") or {}
    membership = None
    if isinstance(context, dict) and context.get("id"):
        membership, _ = ContextMembership.objects.update_or_create(
            platform=platform,
            context_id=str(context["id"])[:255],
            user=user,
            defaults={"context_title": str(context.get("title") or "")[:255], "is_instructor": instructor},
        )
    return LaunchUser(user=user, is_instructor=instructor, membership=membership)


def _find_or_create_user(platform: Platform, sub: str, claims: dict[str, Any]) -> Any:
    now = timezone.now()
    identity = PlatformIdentity.objects.select_related("user").filter(platform=platform, sub=sub).first()
    if identity is not None:
        PlatformIdentity.objects.filter(pk=identity.pk).update(last_launch_at=now)
        return identity.user
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user = user_model(username=username_for(platform, sub))
            user.set_unusable_password()  # signs in through its platform only
            user.save()
            PlatformIdentity.objects.create(platform=platform, sub=sub, user=user, last_launch_at=now)
    except IntegrityError:
        # The same person's first launch in two tabs at once: the other request created them.
        return PlatformIdentity.objects.select_related("user").get(platform=platform, sub=sub).user
    logger.info("LTI: new user %s from platform %s", user.pk, platform.pk)
    return user


def _update_profile(user: Any, claims: dict[str, Any]) -> None:
    fields: dict[str, str] = {}
    for claim, attribute, limit in (("given_name", "first_name", 150), ("family_name", "last_name", 150)):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip() and getattr(user, attribute) != value.strip()[:limit]:
            fields[attribute] = value.strip()[:limit]
    email = _shareable_email(user, claims.get("email"))
    if email is not None and email != user.email:
        fields["email"] = email
    if fields:
        for attribute, value in fields.items():
            setattr(user, attribute, value)
        try:
            with transaction.atomic():
                user.save(update_fields=list(fields))
        except IntegrityError:
            # The email was taken between the check and the save; keep the rest.
            fields.pop("email", None)
            user.refresh_from_db(fields=["email"])
            if fields:
                user.save(update_fields=list(fields))


def _shareable_email(user: Any, email: Any) -> str | None:
    """The platform's email for this user, unless it is malformed or another account has it."""
    if not isinstance(email, str) or not email.strip():
        return None
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        return None
    taken = get_user_model().objects.filter(email__iexact=email).exclude(pk=user.pk).exists()
    if taken:
        logger.info(
            "LTI: user %s's email belongs to another account; not copied, accounts not linked", user.pk
        )
        return None
    return email


def can_see_course_progress(user: Any, link: Any) -> bool:
    """Site staff, and the instructors of the activity's course on its platform."""
    if user.is_staff:
        return True
    if not link.context_id:
        return False
    return ContextMembership.objects.filter(
        platform_id=link.platform_id, context_id=link.context_id, user=user, is_instructor=True
    ).exists()
