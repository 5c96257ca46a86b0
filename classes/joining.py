"""Joining a class: with its access code (signing up or signing in first), or with a one-time
sign-in link from a CSV import. The only place that counts code uses and spends links.

Wrong codes and wrong links are rate-limited per client address, as failed sign-ins are
(accounts.signin_limits): an attempt takes a place before the code is looked up and gives it back
when the code was right, so only failures count and parallel guesses cannot slip between a check
and a count. Counting a use is one conditional UPDATE (still open, still below the maximum), so
parallel sign-ups can never take more places than the code has.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from classes.models import ClassMembership, Classroom, SignInLink, normalize_access_code, token_digest
from laborchestrator.ratelimit import Limit, Rate, RateLimited, RateLimitPlace, take_place

logger = logging.getLogger(__name__)


class JoinRefused(Exception):
    """The code or link cannot be used; `message` says why in words a student understands."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class CodeAttemptsThrottled(RateLimited):
    def __init__(self, wait: float) -> None:
        super().__init__(wait, "Too many wrong class codes or sign-in links from your network.")


def _attempt(address: str | None) -> RateLimitPlace | None:
    if not settings.CLASS_CODE_THROTTLE_ADDRESS or not address:
        return None
    key = "class-code:address:" + hashlib.sha256(address.encode()).hexdigest()[:32]
    try:
        return take_place([Limit(key=key, rate=Rate.parse(settings.CLASS_CODE_THROTTLE_ADDRESS))])
    except RateLimited as refused:
        logger.warning(
            "Class code or sign-in link refused by the throttle (retry after %.0f s)", refused.wait
        )
        raise CodeAttemptsThrottled(refused.wait) from None
    except RedisError as error:
        logger.warning("Class code throttle not checked, Redis unavailable: %s", error)
        return None


def find_open_class(*, code: str, address: str | None) -> Classroom:
    """The class whose code this is, if it still takes sign-ups; JoinRefused or
    CodeAttemptsThrottled otherwise. Expired and used-up codes count as wrong attempts too."""
    attempt = _attempt(address)
    classroom = Classroom.objects.filter(access_code=normalize_access_code(code)[:32]).first()
    if classroom is None:
        raise JoinRefused("This class code is not valid. Check it with your instructor.")
    if classroom.code_expires_at <= timezone.now():
        raise JoinRefused("This class code has expired. Ask your instructor for a new one.")
    if classroom.code_uses >= classroom.code_max_uses:
        raise JoinRefused("This class is full: its code has been used as often as allowed.")
    if attempt is not None:
        attempt.give_back()
    return classroom


def class_join(*, user: AbstractBaseUser, classroom: Classroom) -> ClassMembership:
    """Make `user` a member, counting one use of the code; a member already joined costs nothing.

    Changes no right of the account: staff stay staff, students stay students."""
    existing = ClassMembership.objects.filter(classroom=classroom, user=user).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        counted = Classroom.objects.filter(
            pk=classroom.pk, code_expires_at__gt=timezone.now(), code_uses__lt=F("code_max_uses")
        ).update(code_uses=F("code_uses") + 1)
        if not counted:
            raise JoinRefused("This class is full or its code has expired. Ask your instructor.")
        try:
            with transaction.atomic():
                return ClassMembership.objects.create(
                    classroom=classroom, user=user, source=ClassMembership.Source.ACCESS_CODE
                )
        except IntegrityError:
            # The same user joined in a parallel request: that one counted the use.
            transaction.set_rollback(True)
    return ClassMembership.objects.get(classroom=classroom, user=user)


def sign_up_and_join(*, classroom: Classroom, username: str, password: str, email: str) -> AbstractBaseUser:
    """A new student account (never staff) that is a member of `classroom`, or nothing at all."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, email=email, password=password)
        class_join(user=user, classroom=classroom)
    return user


def issue_sign_in_link(*, user: AbstractBaseUser, classroom: Classroom, created_by: AbstractBaseUser) -> str:
    """A new one-time token for `user` (returned once, kept as its digest). Never for staff: an
    instructor must not be able to sign in as another instructor or an administrator."""
    if user.is_staff or user.is_superuser:
        raise ValueError("One-time sign-in links are never issued for staff accounts.")
    token = secrets.token_urlsafe(32)
    SignInLink.objects.create(
        user=user,
        classroom=classroom,
        token_digest=token_digest(token),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(hours=settings.SIGN_IN_LINK_HOURS),
    )
    return token


def redeem_sign_in_link(*, token: str, address: str | None) -> AbstractBaseUser:
    """The student a one-time link signs in, spending the link (one conditional UPDATE: two parallel
    uses cannot both succeed). JoinRefused when it is unknown, used, expired, or for a staff account."""
    attempt = _attempt(address)
    digest = token_digest(token[:100])
    now = timezone.now()
    spent = SignInLink.objects.filter(
        token_digest=digest,
        used_at__isnull=True,
        expires_at__gt=now,
        user__is_active=True,
        user__is_staff=False,
        user__is_superuser=False,
    ).update(used_at=now)
    if not spent:
        link = SignInLink.objects.filter(token_digest=digest).first()
        if link is None:
            raise JoinRefused("This sign-in link is not valid. Ask your instructor for a new one.")
        if link.used_at is not None:
            raise JoinRefused(
                "This sign-in link has already been used. "
                "Sign in with your password, or ask your instructor for a new link."
            )
        raise JoinRefused("This sign-in link has expired. Ask your instructor for a new one.")
    if attempt is not None:
        attempt.give_back()
    return SignInLink.objects.select_related("user").get(token_digest=digest).user
