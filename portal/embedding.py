"""Which views other sites may frame, and how.

Every page answers `X-Frame-Options: DENY` (settings.X_FRAME_OPTIONS). The views decorated with
`embeddable` instead answer `Content-Security-Policy: frame-ancestors <EMBED_ALLOWED_ORIGINS>` and no
X-Frame-Options header (browsers that know CSP ignore it anyway; older ones would block the frame).
With no origins configured they stay DENY like the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# scheme://host[:port] and nothing else: a value with spaces, quotes or ';' would add CSP directives.
ORIGIN_PATTERN = re.compile(r"^https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def embedding_origins() -> list[str]:
    """The configured origins that are well formed (portal.checks reports the others)."""
    return [origin for origin in settings.EMBED_ALLOWED_ORIGINS if ORIGIN_PATTERN.match(origin)]


def allow_framing(response: HttpResponse) -> HttpResponse:
    origins = embedding_origins()
    if origins:
        response["Content-Security-Policy"] = "frame-ancestors " + " ".join(origins)
        response.xframe_options_exempt = True
    return response


def embeddable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let the sites in EMBED_ALLOWED_ORIGINS (and only them) show this view in an iframe."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return allow_framing(view(request, *args, **kwargs))

    return wrapped
