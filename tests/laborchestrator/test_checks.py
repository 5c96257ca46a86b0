"""The production system check refuses unsafe settings before the server starts."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from laborchestrator.checks import check_production_settings

STRONG_KEY = "k3y-" + "x1y2z3w4v5" * 6


def test_development_settings_pass(settings):
    settings.PRODUCTION = False
    settings.DEBUG = True
    settings.SECRET_KEY = "short"
    assert check_production_settings(None) == []


def test_safe_production_settings_pass(settings):
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.SECRET_KEY = STRONG_KEY
    settings.ALLOWED_HOSTS = ["labs.example.edu"]
    settings.FAST_PASSWORD_HASHING = False
    assert check_production_settings(None) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DEBUG": True}, "laborchestrator.E001"),
        ({"SECRET_KEY": ""}, "laborchestrator.E002"),
        ({"SECRET_KEY": "too-short"}, "laborchestrator.E002"),
        ({"SECRET_KEY": "a" * 80}, "laborchestrator.E002"),
        ({"SECRET_KEY": "django-insecure-" + STRONG_KEY}, "laborchestrator.E002"),
        ({"ALLOWED_HOSTS": []}, "laborchestrator.E003"),
        ({"ALLOWED_HOSTS": ["labs.example.edu", "*"]}, "laborchestrator.E003"),
        ({"FAST_PASSWORD_HASHING": True}, "laborchestrator.E004"),
    ],
)
def test_each_unsafe_production_setting_is_refused(settings, overrides, expected):
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.SECRET_KEY = STRONG_KEY
    settings.ALLOWED_HOSTS = ["labs.example.edu"]
    settings.FAST_PASSWORD_HASHING = False
    for name, value in overrides.items():
        setattr(settings, name, value)
    assert {error.id for error in check_production_settings(None)} == {expected}


def test_manage_check_fails_in_unsafe_production(settings):
    settings.PRODUCTION = True
    settings.DEBUG = True
    with pytest.raises(SystemCheckError, match="DEBUG is on in production"):
        call_command("check")


def test_a_malformed_rate_limit_is_refused_at_start_up(settings):
    from django.core.checks import run_checks

    settings.SIGNIN_THROTTLE_ADDRESS = "fifty per hour"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"instance_start": "30/hr"},
    }
    errors = [error for error in run_checks() if error.id == "laborchestrator.E005"]
    assert [error.msg for error in errors] == [
        """REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["instance_start"] is not a rate: '30/hr'.""",
        "SIGNIN_THROTTLE_ADDRESS is not a rate: 'fifty per hour'.",
    ]
    settings.SIGNIN_THROTTLE_ADDRESS = ""  # off is fine
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"instance_start": "30/hour"},
    }
    assert not [error for error in run_checks() if error.id == "laborchestrator.E005"]
