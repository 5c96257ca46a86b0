"""Failed sign-ins are throttled per user name and per client address, on every sign-in path, with
a 429 and Retry-After; a lock ends one window after the failures that caused it."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def limits(settings):
    def set_limits(*, username: str = "", address: str = "") -> None:
        settings.SIGNIN_THROTTLE_USERNAME = username
        settings.SIGNIN_THROTTLE_ADDRESS = address

    return set_limits


def token(login: str, password: str, address: str = "192.0.2.1"):
    return APIClient(REMOTE_ADDR=address).post(TOKEN_URL, {"username": login, "password": password})


def test_the_token_endpoint_refuses_a_user_name_after_its_failures(student, other_student, limits):
    limits(username="3/minute")
    assert [token("alice", "wrong").status_code for _ in range(3)] == [401, 401, 401]

    refused = token("alice", "pw-alice-1")  # even the right password: it is not checked
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"] == (
        "Too many failed sign-ins for this account or from your network. "
        f"Expected available in {refused['Retry-After']} seconds."
    )
    assert token("ALICE@example.org", "pw-alice-1").status_code == 429  # the same account by email
    assert token("bob", "pw-bob-1").status_code == 200  # another user is not affected


def test_only_failures_count(student, limits):
    limits(username="3/minute", address="3/minute")
    assert [token("alice", "pw-alice-1").status_code for _ in range(6)] == [200] * 6
    assert token("alice", "wrong").status_code == 401


def test_one_address_is_refused_after_its_failures_whatever_the_names(student, limits):
    limits(address="3/minute")
    assert [token(name, "wrong").status_code for name in ("x", "y", "z")] == [401, 401, 401]
    assert token("alice", "pw-alice-1").status_code == 429
    assert token("alice", "pw-alice-1", address="198.51.100.7").status_code == 200


def test_the_sign_in_form_answers_429_with_the_reason(student, limits):
    limits(username="2/minute")
    client = Client(REMOTE_ADDR="192.0.2.1")
    for _ in range(2):
        assert client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-1"})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert (
        "Too many failed sign-ins for this account or from your network. Try again in 1 minute."
        in response.content.decode()
    )
    assert "_auth_user_id" not in client.session


def test_the_admin_sign_in_is_throttled_too(instructor, limits):
    limits(username="2/minute")
    client = Client(REMOTE_ADDR="192.0.2.1")
    for _ in range(2):
        client.post("/admin/login/", {"username": "ines", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "ines", "password": "pw-ines-1"})
    assert response.status_code == 429
    assert "Retry-After" in response


def test_a_lock_ends_one_window_after_the_failures_however_often_it_is_hit(student, limits):
    # The bound on how long one user can lock another out: refused attempts are not counted.
    window = 3.0
    limits(username="3/3s")
    assert [token("alice", "wrong").status_code for _ in range(3)] == [401, 401, 401]
    locked_at = time.monotonic()
    first_wait = int(token("alice", "wrong").get("Retry-After"))
    assert 0 < first_wait <= window
    while True:  # the attacker keeps trying; the owner keeps trying too
        assert token("alice", "wrong").status_code in (401, 429)
        if token("alice", "pw-alice-1").status_code == 200:
            break
        assert time.monotonic() - locked_at < window + 10, "still locked long after the window"
        time.sleep(0.05)
    assert time.monotonic() - locked_at >= window - 0.5  # and the lock did hold


def test_limits_can_be_switched_off(student, limits):
    limits()
    assert {token("alice", "wrong").status_code for _ in range(20)} == {401}
