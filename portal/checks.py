"""Start-up checks of the embedding settings."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from portal.embedding import ORIGIN_PATTERN


@register(Tags.security)
def check_embedding_settings(app_configs, **kwargs) -> list[Error | Warning]:
    messages: list[Error | Warning] = []
    for origin in settings.EMBED_ALLOWED_ORIGINS:
        if not ORIGIN_PATTERN.match(origin):
            messages.append(
                Error(
                    f"EMBED_ALLOWED_ORIGINS has {origin!r}, which is not an origin.",
                    hint="Write each as scheme://host[:port], e.g. https://moodle.example.org, "
                    "without a path or a trailing slash.",
                    id="portal.E001",
                )
            )
    if settings.EMBED_ALLOWED_ORIGINS and not settings.EMBED_CROSS_SITE_COOKIES:
        messages.append(
            Warning(
                "Embedding is configured but cookies are not Secure, so they stay SameSite=Lax.",
                hint="A page on another site (e.g. Moodle on its own domain) frames the labs without "
                "the student's session; students are offered a new window instead. Serve the app over "
                "TLS (SESSION_COOKIE_SECURE=1) to make cookies SameSite=None; Secure.",
                id="portal.W001",
            )
        )
    return messages
