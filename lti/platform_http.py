"""Every HTTP call to a platform (its keyset, token and score endpoints) goes through `platform_session`.

pylti1p3 makes its calls with a `requests.Session` it is given; this one adds the timeout the library
never sets, so a platform that hangs cannot hold a launch or the grade sender forever.
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

USER_AGENT = "LabOrchestrator-LTI/1"


class TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def platform_session() -> requests.Session:
    return TimeoutSession(settings.LTI_HTTP_TIMEOUT_SECONDS)
