"""Start-up checks that refuse an unsafe production configuration."""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from laborchestrator.ratelimit import Rate

# A key shorter than this, or with few distinct characters, is guessable.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5


@register(Tags.security, deploy=False)
def check_production_settings(app_configs, **kwargs) -> list[Error]:
    if not getattr(settings, "PRODUCTION", False):
        return []
    errors = []
    if settings.DEBUG:
        errors.append(
            Error("DEBUG is on in production.", hint="Unset DEBUG or set DEBUG=0.", id="laborchestrator.E001")
        )
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    if (
        len(key) < MIN_SECRET_KEY_LENGTH
        or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS
        or key.startswith("django-insecure-")
    ):
        errors.append(
            Error(
                "SECRET_KEY is missing or too weak for production.",
                hint=f"Set SECRET_KEY or SECRET_KEY_FILE to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters, e.g. from "
                "python -c 'import secrets; print(secrets.token_urlsafe(50))'.",
                id="laborchestrator.E002",
            )
        )
    hosts = settings.ALLOWED_HOSTS
    if not hosts or "*" in hosts:
        errors.append(
            Error(
                "ALLOWED_HOSTS is empty or contains '*' in production.",
                hint="Set ALLOWED_HOSTS to the host names users reach the site by, comma-separated.",
                id="laborchestrator.E003",
            )
        )
    if getattr(settings, "FAST_PASSWORD_HASHING", False):
        errors.append(
            Error(
                "FAST_PASSWORD_HASHING is on in production.",
                hint="It exists for the test suite only; unset it.",
                id="laborchestrator.E004",
            )
        )
    return errors


@register()
def check_rate_settings(app_configs, **kwargs) -> list[Error]:
    """Every rate limit must parse: a malformed one would fail each request it guards."""
    rates = {
        f'REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["{scope}"]': text
        for scope, text in settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).items()
    }
    rates["SIGNIN_THROTTLE_USERNAME"] = settings.SIGNIN_THROTTLE_USERNAME
    rates["SIGNIN_THROTTLE_ADDRESS"] = settings.SIGNIN_THROTTLE_ADDRESS
    errors = []
    for name, text in rates.items():
        if not text:
            continue  # switched off
        try:
            Rate.parse(text)
        except ValueError as error:
            errors.append(
                Error(f"{name} is not a rate: {text!r}.", hint=str(error), id="laborchestrator.E005")
            )
    return errors
