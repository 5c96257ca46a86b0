"""Per-user rate limits for the actions that cost cluster resources or open consoles.

Rates live in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (from the environment) and are read
on each request, not at import, so a changed setting takes effect without a restart of the class.
Counting is laborchestrator.ratelimit's: atomic, so parallel requests (in one process or across
replicas sharing REDIS_URL) never pass more than the rate.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from laborchestrator.ratelimit import Limit, Rate, RateLimited, take_place

logger = logging.getLogger(__name__)


class AtomicUserRateThrottle(BaseThrottle):
    """`scope`'s rate per signed-in user (per client address for anonymous requests)."""

    scope = ""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        # An empty rate in the environment switches the limit off.
        text = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or None
        if text is None:
            return True
        who = (
            f"user:{request.user.pk}"
            if request.user.is_authenticated
            else f"address:{self.get_ident(request)}"
        )
        try:
            take_place([Limit(key=f"{self.scope}:{who}", rate=Rate.parse(text))])
        except RateLimited as refused:
            self.wait_seconds = refused.wait
            return False
        except RedisError as error:
            # The action must not fail because Redis hiccups; its rate is not enforced meanwhile.
            logger.warning("Rate limit %s not checked, Redis unavailable: %s", self.scope, error)
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


class InstanceStartThrottle(AtomicUserRateThrottle):
    scope = "instance_start"


class ConsoleTicketThrottle(AtomicUserRateThrottle):
    scope = "console_ticket"


class StepCheckThrottle(AtomicUserRateThrottle):
    scope = "step_check"
