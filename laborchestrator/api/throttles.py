"""Per-user rate limits for the actions that cost cluster resources or open consoles.

Rates live in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (from the environment) and are read
on each request, not at import, so a changed setting takes effect without a restart of the class.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle


class ScopedUserRateThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        # An empty rate in the environment switches the limit off.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or None


class InstanceStartThrottle(ScopedUserRateThrottle):
    scope = "instance_start"


class ConsoleTicketThrottle(ScopedUserRateThrottle):
    scope = "console_ticket"
