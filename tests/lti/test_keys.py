"""The tool's keys: JWKS, rotation with a grace period, the admin-only configuration page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from lti.keys import jwks, rotate_keys
from lti.models import Platform, ToolKey

pytestmark = pytest.mark.django_db


def kids(client) -> list[str]:
    return [key["kid"] for key in client.get("/lti/jwks/").json()["keys"]]


def test_jwks_publishes_public_keys_only(client):
    response = client.get("/lti/jwks/")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key and "p" not in key
    assert key["kid"] == ToolKey.objects.get().kid


def test_rotation_keeps_the_previous_key_for_the_grace_period(client, settings, capsys):
    old = kids(client)[0]
    call_command("lti_rotate_keys")
    assert "New key" in capsys.readouterr().out
    new = ToolKey.objects.current().get().kid
    assert new != old
    assert set(kids(client)) == {old, new}
    later = timezone.now() + timedelta(hours=settings.LTI_KEY_GRACE_HOURS, minutes=1)
    assert [key["kid"] for key in jwks(now=later)["keys"]] == [new]
    # The next rotation after the grace period deletes the expired key for good.
    rotation = rotate_keys(now=later)
    assert rotation.deleted == 1
    assert not ToolKey.objects.filter(kid=old).exists()


def test_configuration_page_is_for_staff_and_lists_what_moodle_asks_for(client, instructor, student):
    assert client.get("/lti/configuration/").status_code == 302
    client.force_login(student)
    assert client.get("/lti/configuration/").status_code == 302
    client.force_login(instructor)
    page = client.get("/lti/configuration/")
    assert page.status_code == 200
    text = page.content.decode()
    for label, url in [
        ("Tool URL", "http://localhost:8000/lti/launch/"),
        ("Initiate login URL", "http://localhost:8000/lti/login/"),
        ("Redirection URI(s)", "http://localhost:8000/lti/launch/"),
        ("Public keyset URL", "http://localhost:8000/lti/jwks/"),
    ]:
        assert label in text and url in text
    assert "BEGIN PUBLIC KEY" in text
    assert "PRIVATE" not in text


def test_platform_needs_a_key_source_and_a_deployment():
    platform = Platform(
        name="M",
        issuer="https://m.example",
        client_id="c",
        deployment_ids=" ",
        auth_login_url="https://m.example/auth",
        auth_token_url="https://m.example/token",
    )
    with pytest.raises(ValidationError) as error:
        platform.full_clean()
    assert "keyset_url" in error.value.message_dict and "deployment_ids" in error.value.message_dict
    platform.public_key = "not a key"
    with pytest.raises(ValidationError) as error:
        platform.full_clean()
    assert "public_key" in error.value.message_dict
