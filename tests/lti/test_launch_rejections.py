"""Every launch the tool must refuse: a clear page with 400/403, a log line naming the reason, no
token contents in the log, and nobody signed in."""

from __future__ import annotations

import time

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from lti.models import LoginState, PlatformIdentity
from tests.lti.fake_platform import CLAIM, launch_claims, new_rsa_key, start_login

pytestmark = pytest.mark.django_db


def assert_refused(response, caplog, code: str, status: int = 403) -> None:
    assert response.status_code == status, response.content
    assert b"Lab Orchestrator cannot open this activity" in response.content
    assert code.encode() in response.content
    assert f"LTI launch refused: {code}" in caplog.text
    assert response.id_token not in caplog.text
    assert response.id_token.split(".")[1] not in caplog.text
    assert not PlatformIdentity.objects.exists()
    assert not response.wsgi_request.user.is_authenticated


def drop(*names: str):
    def edit(claims: dict) -> None:
        for name in names:
            claims.pop(name)

    return edit


def test_bad_signature(client, platform, lab, do_launch, fake_platform, caplog):
    login = start_login(client)
    # Signed by another key under the platform's key id.
    token = fake_platform.sign(launch_claims(login.nonce), key=new_rsa_key())
    response = client.post("/lti/launch/", {"state": login.state, "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "bad_signature")


def test_tampered_claims_break_the_signature(client, platform, lab, fake_platform, caplog):
    login = start_login(client)
    header, _body, signature = fake_platform.sign(launch_claims(login.nonce)).split(".")
    other_body = fake_platform.sign(launch_claims(login.nonce, sub="someone-else")).split(".")[1]
    token = f"{header}.{other_body}.{signature}"
    response = client.post("/lti/launch/", {"state": login.state, "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "bad_signature")


def test_unsigned_and_hmac_tokens_are_refused(client, platform, lab, caplog):
    for algorithm, key in (("none", None), ("HS256", "a-shared-secret-long-enough-for-hs256")):
        login = start_login(client)
        token = jwt.encode(
            launch_claims(login.nonce), key, algorithm=algorithm, headers={"kid": "moodle-key-1"}
        )
        response = client.post("/lti/launch/", {"state": login.state, "id_token": token})
        response.id_token = token
        assert_refused(response, caplog, "bad_signature")


def test_key_the_platform_does_not_publish(client, platform, lab, fake_platform, caplog):
    login = start_login(client)
    token = fake_platform.sign(launch_claims(login.nonce), kid="unknown-kid")
    response = client.post("/lti/launch/", {"state": login.state, "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "unknown_key")


def test_wrong_audience(client, platform, lab, do_launch, caplog):
    assert_refused(do_launch(client, aud="another-tool"), caplog, "wrong_audience")


def test_several_audiences_need_us_as_authorized_party(client, platform, lab, do_launch, caplog):
    response = do_launch(client, aud=["another-tool", platform.client_id], azp="another-tool")
    assert_refused(response, caplog, "wrong_audience")


def test_wrong_issuer(client, platform, lab, do_launch, caplog):
    assert_refused(do_launch(client, iss="https://evil.example"), caplog, "wrong_issuer")


def test_unknown_deployment(client, platform, lab, do_launch, caplog):
    response = do_launch(client, **{CLAIM + "deployment_id": "77"})
    assert_refused(response, caplog, "unknown_deployment")


def test_replayed_id_token(client, platform, lab, do_launch, caplog):
    first = do_launch(client)
    assert first.status_code == 302
    PlatformIdentity.objects.all().delete()
    # Replayed from another browser (one that captured the form post): the state is used up.
    again = Client().post("/lti/launch/", {"state": first.login.state, "id_token": first.id_token})
    again.id_token = first.id_token
    assert_refused(again, caplog, "replayed")


def test_id_token_replayed_into_a_new_login(client, platform, lab, do_launch, caplog):
    first = do_launch(client)
    PlatformIdentity.objects.all().delete()
    replayer = Client()
    login = start_login(replayer)
    again = replayer.post("/lti/launch/", {"state": login.state, "id_token": first.id_token})
    again.id_token = first.id_token
    assert_refused(again, caplog, "nonce_mismatch")


def test_expired(client, platform, lab, do_launch, caplog):
    now = int(time.time())
    assert_refused(do_launch(client, iat=now - 3600, exp=now - 600), caplog, "expired")


def test_issued_in_the_future(client, platform, lab, do_launch, caplog):
    now = int(time.time())
    assert_refused(do_launch(client, iat=now + 3600, exp=now + 7200), caplog, "not_yet_valid")


@pytest.mark.parametrize(
    "missing",
    ["exp", "iat", "nonce", "sub", CLAIM + "deployment_id", CLAIM + "roles", CLAIM + "version"],
)
def test_missing_claims(client, platform, lab, do_launch, caplog, missing):
    assert_refused(do_launch(client, edit=drop(missing)), caplog, "missing_claim", status=400)


def test_missing_resource_link_id(client, platform, lab, do_launch, caplog):
    response = do_launch(client, **{CLAIM + "resource_link": {"title": "no id"}})
    assert_refused(response, caplog, "missing_claim", status=400)


def test_unknown_state(client, platform, lab, fake_platform, caplog):
    login = start_login(client)
    token = fake_platform.sign(launch_claims(login.nonce))
    response = client.post("/lti/launch/", {"state": "made-up", "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "unknown_state", status=400)


def test_state_of_another_browser_s_login(client, platform, lab, fake_platform, caplog):
    start_login(client)  # this browser has its own login going
    attacker = Client()
    attacker_login = start_login(attacker)
    token = fake_platform.sign(launch_claims(attacker_login.nonce, sub="attacker"))
    response = client.post("/lti/launch/", {"state": attacker_login.state, "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "state_mismatch")


def test_state_older_than_the_login_lifetime(client, platform, lab, do_launch, caplog, settings):
    settings.LTI_LOGIN_STATE_SECONDS = -1
    assert_refused(do_launch(client), caplog, "expired_state", status=400)


def test_inactive_platform(client, platform, lab, fake_platform, caplog):
    login = start_login(client)
    platform.is_active = False
    platform.save()
    token = fake_platform.sign(launch_claims(login.nonce))
    response = client.post("/lti/launch/", {"state": login.state, "id_token": token})
    response.id_token = token
    assert_refused(response, caplog, "platform_inactive")


def test_malformed_token(client, platform, lab, caplog):
    login = start_login(client)
    response = client.post("/lti/launch/", {"state": login.state, "id_token": "not.a-jwt"})
    response.id_token = "not.a-jwt"
    assert_refused(response, caplog, "malformed_token", status=400)


def test_platform_keyset_unreachable_is_a_gateway_error(
    client, platform, lab, do_launch, fake_platform, caplog
):
    fake_platform.responses["/jwks"] = [503]
    response = do_launch(client)
    assert_refused(response, caplog, "platform_keys_unavailable", status=502)


def test_disabled_local_account_cannot_launch(client, platform, lab, do_launch, caplog):
    do_launch(client)
    user = PlatformIdentity.objects.get().user
    user.is_active = False
    user.save()
    response = do_launch(Client())
    assert response.status_code == 403
    assert "LTI launch refused: user_inactive" in caplog.text


def test_cookies_blocked_offers_a_new_window_that_restarts_the_login(
    client, platform, lab, fake_platform, caplog
):
    login = start_login(client)
    token = fake_platform.sign(launch_claims(login.nonce))
    framed = Client()  # the browser did not send the cookie set at login
    response = framed.post("/lti/launch/", {"state": login.state, "id_token": token})
    assert response.status_code == 400
    assert b"Open in a new window" in response.content
    assert b'target="_blank"' in response.content
    restart = response.context["restart_url"]
    assert restart.startswith("http://localhost:8000/lti/login/?")
    assert "lti_message_hint=hint-123" in restart and "login_hint=7" in restart
    assert "LTI launch refused: state_cookie_missing" in caplog.text
    assert token not in caplog.text
    # The restarted login (top-level, cookies work) leads to a launch that signs the user in.
    restarted = framed.get(restart.removeprefix("http://localhost:8000"))
    assert restarted.status_code == 302
    state = restarted.cookies
    new_login_state = next(name for name in state if name.startswith("lti-state-")).removeprefix("lti-state-")
    nonce = LoginState.objects.get(state=new_login_state).nonce
    done = framed.post(
        "/lti/launch/", {"state": new_login_state, "id_token": fake_platform.sign(launch_claims(nonce))}
    )
    assert done.status_code == 302
    assert get_user_model().objects.filter(lti_identities__sub="moodle-user-7").exists()
