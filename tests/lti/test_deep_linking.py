"""Deep linking: an instructor picks a lab; the signed response verifies against our JWKS."""

from __future__ import annotations

import jwt
import pytest
from django.test import Client

from lti.models import DeepLinkingRequest
from tests.lti.fake_platform import CLAIM, CLIENT_ID, DEPLOYMENT_ID, DL_SETTINGS, INSTRUCTOR, ISSUER, LEARNER

pytestmark = pytest.mark.django_db

RETURN_URL = "https://moodle.example.org/mod/lti/contentitem_return.php?course=3"


def deep_linking_claims(roles: list[str]) -> dict:
    return {
        "roles": roles,
        "sub": "teacher-1",
        CLAIM + "message_type": "LtiDeepLinkingRequest",
        DL_SETTINGS: {
            "deep_link_return_url": RETURN_URL,
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "accept_multiple": False,
            "data": "opaque-platform-data",
        },
    }


def launch_deep_linking(client, do_launch, roles):
    def edit(claims):
        claims.pop(CLAIM + "resource_link")
        claims.pop(CLAIM + "custom")

    return do_launch(client, edit=edit, **deep_linking_claims(roles))


def test_instructor_picks_a_lab_and_the_platform_gets_a_signed_resource_link(
    client, platform, lab, tutorial, do_launch
):
    response = launch_deep_linking(client, do_launch, [INSTRUCTOR])
    assert response.status_code == 302
    pick_url = response["Location"]
    assert pick_url.startswith("/lti/deep-linking/")

    page = Client().get(pick_url)  # works without the session (cookies blocked in the frame)
    assert page.status_code == 200
    assert b"Explore the network" in page.content
    assert b'value="explore/networking"' in page.content

    answer = Client().post(pick_url, {"choice": "explore/networking"})
    assert answer.status_code == 200
    assert answer.context["return_url"] == RETURN_URL
    assert f'action="{RETURN_URL.replace("&", "&amp;")}"'.encode() in answer.content
    token = answer.context["jwt"]

    tool_keys = jwt.PyJWKSet.from_dict(client.get("/lti/jwks/").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in tool_keys.keys if k.key_id == kid)
    message = jwt.decode(token, key.key, algorithms=["RS256"], audience=ISSUER, issuer=CLIENT_ID)
    assert message[CLAIM + "message_type"] == "LtiDeepLinkingResponse"
    assert message[CLAIM + "version"] == "1.3.0"
    assert message[CLAIM + "deployment_id"] == DEPLOYMENT_ID
    assert message["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "opaque-platform-data"
    (item,) = message["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert item["type"] == "ltiResourceLink"
    assert item["url"] == "http://localhost:8000/lti/launch/"
    assert item["custom"] == {"lab": "explore", "tutorial": "networking"}
    assert item["title"] == "Explore the network: Networking basics"
    assert item["lineItem"]["scoreMaximum"] == 100

    # A pick is final: the same page cannot send a second answer.
    again = Client().post(pick_url, {"choice": "explore"})
    assert again.status_code == 403


def test_learners_cannot_deep_link(client, platform, lab, do_launch, caplog):
    response = launch_deep_linking(client, do_launch, [LEARNER])
    assert response.status_code == 403
    assert "LTI launch refused: not_instructor" in caplog.text
    assert not DeepLinkingRequest.objects.exists()


def test_unknown_token_and_unpublished_lab_are_refused(client, platform, lab, do_launch):
    assert Client().get("/lti/deep-linking/made-up/").status_code == 403
    pick_url = launch_deep_linking(client, do_launch, [INSTRUCTOR])["Location"]
    lab.published = False
    lab.save()
    assert Client().post(pick_url, {"choice": "explore"}).status_code == 404
