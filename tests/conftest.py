"""Fixtures shared by the whole suite. Each app's tests live in tests/<app>/."""

import os
import shutil

import pytest
from django.test import override_settings

from laborchestrator.ratelimit import local_store

# The boundary guard fails the session if anything reads beside the checkout (tests/repository/).
pytest_plugins = ["localcluster.pytest_plugin", "tests.repository.boundary"]


def require_tool(executable: str, debian_package: str) -> str:
    """Path of a system tool a test needs; skip naming the package to install when missing.

    CI sets LABORCHESTRATOR_REQUIRE_ALL_TESTS=1 after installing every package, so there a
    missing tool fails the test instead of skipping it silently.
    """
    path = shutil.which(executable) or (
        executable if os.path.isabs(executable) and os.path.exists(executable) else None
    )
    if path:
        return path
    message = f"needs {executable}: apt-get install {debian_package}"
    if os.getenv("LABORCHESTRATOR_REQUIRE_ALL_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_service(check, name: str, debian_package: str) -> None:
    """Skip (fail in CI, as `require_tool`) when a local service a test needs does not answer."""
    try:
        check()
    except Exception as error:
        message = f"needs {name} running locally ({error}): apt-get install {debian_package}"
        if os.getenv("LABORCHESTRATOR_REQUIRE_ALL_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate limits counted in this process (no REDIS_URL) start empty in every test: the suite signs
    in as the same few user names from the same address all the time."""
    local_store.clear()
    yield
    local_store.clear()


@pytest.fixture(autouse=True)
def _one_installation():
    """The whole suite is one installation, as a deployment is: without this every test database
    would generate its own installation id, and a later `reconcile` would not remove the lab
    namespaces an earlier test left running (their machines count against the local cluster's node).
    (Not through pytest-django's `settings` fixture: some tests use that name for a parameter.)"""
    with override_settings(INSTALLATION_ID="test-suite"):  # as server processes: tests/vncproxy/app_server.py
        yield


@pytest.fixture
def student(django_user_model):
    return django_user_model.objects.create_user(
        username="alice", email="alice@example.org", password="pw-alice-1"
    )


@pytest.fixture
def other_student(django_user_model):
    return django_user_model.objects.create_user(username="bob", email="bob@example.org", password="pw-bob-1")


@pytest.fixture
def instructor(django_user_model):
    return django_user_model.objects.create_user(
        username="ines", email="ines@example.org", password="pw-ines-1", is_staff=True
    )
