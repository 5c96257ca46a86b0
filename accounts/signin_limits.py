"""Sign-in throttling: failed password sign-ins are limited per user name and per client address.

Every password sign-in (the sign-in form, the admin's, `/api/auth/token/`) goes through
accounts.backends, which takes a place in both limits before the password is checked and gives it
back when the password was right: only failures count, and parallel guesses cannot slip through
between a check and a count (laborchestrator.ratelimit). A refused attempt is not counted and the
password is not checked, so hammering a locked name does not extend its lock: a lock ends at most
one window (SIGNIN_THROTTLE_USERNAME's period) after the failures that caused it.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from redis.exceptions import RedisError

from laborchestrator.ratelimit import Limit, Rate, RateLimited, RateLimitPlace, take_place

logger = logging.getLogger(__name__)


class SignInThrottled(RateLimited):
    """Too many failed sign-ins for this user name or from this address."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait, "Too many failed sign-ins for this account or from your network.")


def _digest(value: str) -> str:
    # Keys name no user or address in the clear (Redis is shared infrastructure).
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def signin_limits(*, username: str, address: str | None) -> list[Limit]:
    limits = []
    if settings.SIGNIN_THROTTLE_USERNAME:
        rate = Rate.parse(settings.SIGNIN_THROTTLE_USERNAME)
        limits.append(Limit(key=f"signin:username:{_digest(username.strip().lower())}", rate=rate))
    if settings.SIGNIN_THROTTLE_ADDRESS and address:
        rate = Rate.parse(settings.SIGNIN_THROTTLE_ADDRESS)
        limits.append(Limit(key=f"signin:address:{_digest(address)}", rate=rate))
    return limits


def signin_attempt(*, username: str, address: str | None) -> RateLimitPlace | None:
    """Count a sign-in attempt as failed until `give_back()`; raise SignInThrottled when over a limit.

    None when no limit applies or Redis cannot be reached (signing in must not depend on Redis).
    """
    limits = signin_limits(username=username, address=address)
    if not limits:
        return None
    try:
        return take_place(limits)
    except RateLimited as refused:
        logger.warning("Sign-in refused by the throttle (retry after %.0f s)", refused.wait)
        raise SignInThrottled(refused.wait) from None
    except RedisError as error:
        logger.warning("Sign-in throttle not checked, Redis unavailable: %s", error)
        return None
