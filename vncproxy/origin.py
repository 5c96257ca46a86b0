"""Which pages may open a console websocket: our own hosts and the embedding sites.

A websocket handshake carries the browser's cookies whatever page started it, so the Origin is
what stops another site from opening a signed-in student's console (cross-site websocket hijacking).
Channels' AllowedHostsOriginValidator knows ALLOWED_HOSTS only; pages embedding the labs (e.g. a
Moodle site, settings.EMBED_ALLOWED_ORIGINS as `scheme://host[:port]`) need their origins too.
A handshake without an Origin header (not a browser) is refused, as Channels does.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class ConsoleOriginValidator(OriginValidator):
    """Reads the settings on each handshake, so they can change without rebuilding the stack."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: Any) -> bool:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]  # what Django allows then, too
        self.allowed_origins = [*allowed, *settings.EMBED_ALLOWED_ORIGINS]
        return super().valid_origin(parsed_origin)
