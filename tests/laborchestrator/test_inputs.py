"""URLs and form posts outside the API carrying text no view can use are a 400 saying why, before
any file lookup, admin filter or LTI query sees them (on PostgreSQL a NUL in a query is a 500)."""

from __future__ import annotations

import pytest
from django.test import Client

from lti.models import Platform

pytestmark = pytest.mark.django_db


def http() -> Client:
    return Client(raise_request_exception=False)


def assert_refused(response, *words: str) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    for word in words:
        assert word in text


@pytest.mark.parametrize(
    "path", ["/media/%00", "/media/tutorials/a%00.png", "/static/%00.js", "/lti/deep-linking/%00/"]
)
def test_nul_in_a_path_is_a_400(path):
    assert_refused(http().get(path), "address", "NUL character")


def test_nul_in_an_admin_filter_is_a_400(instructor):
    client = http()
    client.force_login(instructor)

    response = client.get("/admin/labs/labinstance/", {"status__exact": "\x00"})

    assert_refused(response, "'status__exact'", "NUL character")


def test_the_admin_filter_still_works_with_a_real_value(instructor):
    client = http()
    client.force_login(instructor)

    assert client.get("/admin/labs/labinstance/", {"status__exact": "running"}).status_code == 200


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_nul_in_the_lti_launch_state_is_a_400(encoding):
    data = {"state": "\x00", "id_token": "a.b.c"}
    if encoding == "urlencoded":
        response = http().post(
            "/lti/launch/", "state=%00&id_token=a.b.c", content_type="application/x-www-form-urlencoded"
        )
    else:
        response = http().post("/lti/launch/", data)

    assert_refused(response, "'state'", "NUL character")


def test_nul_in_an_lti_login_parameter_is_a_400():
    response = http().get("/lti/login/", {"iss": "https://moodle.example.org\x00", "login_hint": "1"})

    assert_refused(response, "'iss'", "NUL character")


def test_a_pasted_platform_key_nested_thousands_deep_is_a_form_error(instructor):
    platform = Platform(
        name="Moodle",
        issuer="https://moodle.example.org",
        client_id="c",
        deployment_ids="1",
        auth_login_url="https://moodle.example.org/auth",
        auth_token_url="https://moodle.example.org/token",
        public_key="[" * 100_000 + "]" * 100_000,
    )

    with pytest.raises(Exception) as raised:
        platform.full_clean()

    assert "public_key" in raised.value.message_dict
    assert "JSON keyset" in raised.value.message_dict["public_key"][0]
