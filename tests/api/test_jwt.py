"""JSON Web Tokens: obtain with a user name or an email address, use, refresh, expire, tamper."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

pytestmark = pytest.mark.django_db


def obtain(username: str, password: str) -> tuple[int, dict]:
    response = APIClient().post("/api/auth/token/", {"username": username, "password": password})
    return response.status_code, response.json()


def me(access: str) -> tuple[int, dict]:
    response = APIClient().get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {access}")
    return response.status_code, response.json()


@pytest.mark.parametrize("login", ["alice", "alice@example.org", "ALICE@example.org"])
def test_obtain_with_user_name_or_email_and_use_it(student, login):
    status, tokens = obtain(login, "pw-alice-1")

    assert status == 200
    assert set(tokens) == {"access", "refresh"}
    assert me(tokens["access"]) == (
        200,
        {
            "id": student.pk,
            "username": "alice",
            "email": "alice@example.org",
            "first_name": "",
            "last_name": "",
            "is_staff": False,
            "is_instructor": False,
        },
    )


@pytest.mark.parametrize("login", ["alice", "alice@example.org", "nobody@example.org"])
def test_wrong_password_or_unknown_user_gets_no_token(student, login):
    status, body = obtain(login, "wrong")

    assert status == 401
    assert "access" not in body


def test_inactive_user_gets_no_token(student):
    student.is_active = False
    student.save()

    assert obtain("alice", "pw-alice-1")[0] == 401


def test_refresh_gives_a_working_access_token(student):
    _, tokens = obtain("alice", "pw-alice-1")

    response = APIClient().post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]})

    assert response.status_code == 200
    assert me(response.json()["access"])[1]["username"] == "alice"


def test_an_access_token_is_not_a_refresh_token(student):
    _, tokens = obtain("alice", "pw-alice-1")

    response = APIClient().post("/api/auth/token/refresh/", {"refresh": tokens["access"]})

    assert response.status_code == 401


def test_expired_access_token_is_refused(student):
    token = AccessToken.for_user(student)
    token.set_exp(lifetime=-timedelta(seconds=1))

    status, body = me(str(token))

    assert status == 401
    assert body["code"] == "token_not_valid"


def test_expired_refresh_token_is_refused(student):
    token = RefreshToken.for_user(student)
    token.set_exp(lifetime=-timedelta(seconds=1))

    response = APIClient().post("/api/auth/token/refresh/", {"refresh": str(token)})

    assert response.status_code == 401


def test_tampered_token_is_refused(student, other_student):
    header, payload, signature = str(AccessToken.for_user(student)).split(".")
    other_payload = str(AccessToken.for_user(other_student)).split(".")[1]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")

    assert me(f"{header}.{other_payload}.{signature}")[0] == 401
    assert me(f"{header}.{payload}.{flipped}")[0] == 401
    assert me(f"{header}.{payload}.{signature}")[0] == 200


def test_token_of_a_deactivated_user_stops_working(student):
    access = str(AccessToken.for_user(student))
    student.is_active = False
    student.save()

    assert me(access)[0] == 401


def test_anonymous_sees_nothing_but_tokens_and_docs(db):
    client = APIClient()

    assert client.get("/api/me/").status_code == 401
    assert client.get("/api/labs/").status_code == 401
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
