"""The whole OIDC login → launch through the test client, against the fake platform's keyset."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import get_user_model

from lti.models import ContextMembership, LoginState, Platform, PlatformIdentity, ResourceLink
from tests.lti.fake_platform import CLIENT_ID, INSTRUCTOR, ISSUER, LIS, launch_claims, public_pem, start_login

User = get_user_model()
pytestmark = pytest.mark.django_db


def test_login_redirects_to_the_platform_with_state_nonce_and_our_launch_url(client, platform):
    login = start_login(client)
    assert login.response.status_code == 302
    location = urlparse(login.response["Location"])
    assert location.path == "/auth"
    assert login.params["redirect_uri"] == "http://localhost:8000/lti/launch/"
    assert login.params["client_id"] == CLIENT_ID
    assert login.params["response_type"] == "id_token"
    assert login.params["response_mode"] == "form_post"
    assert login.params["scope"] == "openid"
    assert login.params["prompt"] == "none"
    assert login.params["login_hint"] == "7"
    assert login.params["lti_message_hint"] == "hint-123"
    cookie = login.response.cookies[f"lti-state-{login.state}"]
    assert cookie.value == login.state
    assert cookie["httponly"]
    assert LoginState.objects.get(state=login.state).nonce == login.nonce


def test_login_by_post_without_client_id_finds_the_issuers_only_platform(client, platform):
    login = start_login(client, method="post", client_id="")
    assert login.response.status_code == 302
    assert login.params["client_id"] == CLIENT_ID


def test_login_from_an_unknown_platform_is_refused(client, platform, caplog):
    login = start_login(client, iss="https://elsewhere.example")
    assert login.response.status_code == 403
    assert b"not registered" in login.response.content
    assert "login_unknown_platform" in caplog.text


def test_learner_launch_creates_the_user_signs_them_in_and_lands_on_the_embedded_lab(
    client, platform, lab, do_launch
):
    response = do_launch(client)
    assert response.status_code == 302
    assert response["Location"] == "/embed/labs/explore/"
    user = User.objects.get(lti_identities__platform=platform, lti_identities__sub="moodle-user-7")
    assert (user.first_name, user.last_name, user.email) == ("Ada", "Lovelace", "ada@uni.example")
    assert not user.is_staff
    assert not user.has_usable_password()
    # Signed in: the embed page shows the lab, not the "sign in" page.
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Explore the network" in page.content
    assert page.context["user"] == user
    assert f"lti-state-{response.login.state}" in response.cookies  # deleted
    assert response.cookies[f"lti-state-{response.login.state}"]["max-age"] == 0


def test_the_same_sub_is_the_same_user_and_another_platform_s_sub_is_someone_else(
    client, platform, lab, do_launch, fake_platform
):
    do_launch(client)
    do_launch(client, given_name="Augusta")
    assert PlatformIdentity.objects.count() == 1
    user = PlatformIdentity.objects.get().user
    user.refresh_from_db()
    assert user.first_name == "Augusta"

    other = Platform.objects.create(
        name="Other Moodle",
        issuer=ISSUER,
        client_id="second-client",
        deployment_ids="9",
        auth_login_url=f"{fake_platform.base_url}/auth",
        auth_token_url=f"{fake_platform.base_url}/token",
        keyset_url=f"{fake_platform.base_url}/jwks",
    )
    login = start_login(client, client_id="second-client")
    claims = launch_claims(login.nonce, aud="second-client", email="ada2@uni.example")
    claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] = "9"
    response = client.post("/lti/launch/", {"state": login.state, "id_token": fake_platform.sign(claims)})
    assert response.status_code == 302
    second = PlatformIdentity.objects.get(platform=other, sub="moodle-user-7").user
    assert second != user


def test_an_existing_account_with_the_same_email_is_not_taken_over(client, platform, lab, do_launch):
    local = User.objects.create_user(username="ada", email="ADA@uni.example", password="pw-local-1")
    response = do_launch(client)
    assert response.status_code == 302
    lti_user = PlatformIdentity.objects.get().user
    assert lti_user != local
    assert lti_user.email == ""
    assert client.get("/embed/labs/explore/").context["user"] == lti_user


def test_instructor_gets_course_rights_not_staff_and_lands_on_the_activity_s_progress(
    client, platform, lab, do_launch
):
    response = do_launch(client, sub="teacher-1", roles=[INSTRUCTOR, LIS + "institution/person#Faculty"])
    link = ResourceLink.objects.get()
    assert response["Location"] == f"/lti/activities/{link.pk}/progress/"
    teacher = PlatformIdentity.objects.get(sub="teacher-1").user
    assert not teacher.is_staff
    assert ContextMembership.objects.get(user=teacher).is_instructor
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Networking basics" in page.content
    # Not an admin anywhere: the Django admin stays closed.
    assert client.get("/admin/").status_code == 302


def test_instructor_sees_their_course_s_learners_and_no_other_course(client, platform, lab, do_launch):
    learner_client = type(client)()
    do_launch(learner_client, sub="student-1", given_name="Grace", family_name="Hopper")
    response = do_launch(client, sub="teacher-1", roles=[LIS + "membership/Instructor#TeachingAssistant"])
    page = client.get(response["Location"])
    assert b"Grace Hopper" in page.content
    # A learner of the course cannot see the progress page; nor can an instructor of another course.
    link = ResourceLink.objects.get()
    assert learner_client.get(f"/lti/activities/{link.pk}/progress/").status_code == 404
    other_client = type(client)()
    do_launch(
        other_client,
        sub="teacher-2",
        roles=[INSTRUCTOR],
        **{
            "https://purl.imsglobal.org/spec/lti/claim/context": {"id": "course-9"},
            "https://purl.imsglobal.org/spec/lti/claim/resource_link": {"id": "rl-other"},
        },
    )
    assert other_client.get(f"/lti/activities/{link.pk}/progress/").status_code == 404


def test_resource_link_keeps_its_lab_when_a_later_launch_has_no_custom_parameter(
    client, platform, lab, do_launch
):
    do_launch(client)
    response = do_launch(client, **{"https://purl.imsglobal.org/spec/lti/claim/custom": {}})
    assert response["Location"] == "/embed/labs/explore/"


def test_custom_tutorial_lands_on_its_lab(client, platform, lab, do_launch):
    response = do_launch(
        client, **{"https://purl.imsglobal.org/spec/lti/claim/custom": {"tutorial": "networking"}}
    )
    assert response["Location"] == "/embed/labs/explore/?tutorial=networking"


def test_activity_without_a_lab_tells_the_learner(client, platform, lab, do_launch):
    response = do_launch(client, **{"https://purl.imsglobal.org/spec/lti/claim/custom": {}})
    assert response.status_code == 200
    assert b"has no lab yet" in response.content


def test_activity_pointing_at_an_unpublished_lab_is_a_clear_404(client, platform, lab, do_launch, caplog):
    lab.published = False
    lab.save()
    response = do_launch(client)
    assert response.status_code == 404
    assert b"does not exist or is not published" in response.content
    assert "unknown_lab" in caplog.text


def test_pasted_platform_key_replaces_the_keyset_url(client, platform, lab, do_launch, fake_platform):
    platform.keyset_url = ""
    platform.public_key = public_pem(fake_platform.key)
    platform.full_clean()
    platform.save()
    response = do_launch(client)
    assert response.status_code == 302
    assert not fake_platform.received("/jwks")


def test_launch_pages_may_be_framed_by_the_embedding_origins(client, platform, lab, do_launch, settings):
    settings.EMBED_ALLOWED_ORIGINS = ["https://moodle.example.org"]
    response = do_launch(client, **{"https://purl.imsglobal.org/spec/lti/claim/custom": {}})
    assert response["Content-Security-Policy"] == "frame-ancestors https://moodle.example.org"
    assert "X-Frame-Options" not in response


def test_login_params_are_kept_for_a_restart(client, platform):
    login = start_login(client)
    kept = LoginState.objects.get(state=login.state).login_params
    assert kept["login_hint"] == "7" and kept["lti_message_hint"] == "hint-123"
    assert parse_qs(urlparse(login.response["Location"]).query)["state"] == [login.state]
