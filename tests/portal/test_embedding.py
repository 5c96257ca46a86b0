"""Embedding: only the embed views may be framed, and only by EMBED_ALLOWED_ORIGINS; anonymous
visitors of an embed view are told how to continue instead of being sent to a sign-in form that
cannot be framed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from laborchestrator.api import urls as _api_urls  # noqa: F401 (the API routes are registered)
from labs.models import LabInstance

from .conftest import MOODLE

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedding(settings):
    settings.EMBED_ALLOWED_ORIGINS = [MOODLE, "http://127.0.0.1:8081"]
    return settings


def assert_frameable_by(response, origins: str) -> None:
    assert response["Content-Security-Policy"] == f"frame-ancestors {origins}"
    assert "X-Frame-Options" not in response


def assert_not_frameable(response) -> None:
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors" not in response.get("Content-Security-Policy", "")


def test_embed_views_are_frameable_by_the_configured_origins(embedding, client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    for url in (
        reverse("portal:embed-instance", args=[instance.pk]),
        reverse("portal:embed-lab", args=["explore"]),
    ):
        response = client.get(url)
        assert response.status_code in (200, 302)
        assert_frameable_by(response, f"{MOODLE} http://127.0.0.1:8081")


def test_everything_else_stays_deny(embedding, client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    anonymous_urls = [reverse("login"), "/", "/admin/login/"]
    for url in anonymous_urls:
        assert_not_frameable(client.get(url))
    client.force_login(student)
    for url in ["/", reverse("portal:instance", args=[instance.pk]), f"/api/instances/{instance.pk}/"]:
        assert_not_frameable(client.get(url))


def test_without_configured_origins_nothing_is_frameable(client, student, lab, make_instance, settings):
    settings.EMBED_ALLOWED_ORIGINS = []
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    assert_not_frameable(client.get(reverse("portal:embed-instance", args=[instance.pk])))


def test_malformed_origins_never_reach_the_header(client, student, lab, make_instance, settings):
    settings.EMBED_ALLOWED_ORIGINS = [MOODLE, "https://evil.example; script-src *", "https://x.example/path"]
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    response = client.get(reverse("portal:embed-instance", args=[instance.pk]))
    assert_frameable_by(response, MOODLE)


def test_the_embed_instance_view_has_minimal_chrome_and_a_new_window_link(
    embedding, client, student, lab, make_instance
):
    instance = make_instance(owner=student, lab=lab)
    client.force_login(student)
    response = client.get(reverse("portal:embed-instance", args=[instance.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'class="site-header"' not in page
    assert f'href="http://testserver/instances/{instance.pk}/" target="_blank"' in page
    assert response.context["config"]["embed"] is True
    assert response.context["config"]["urls"]["instancePage"] == "/embed/instances/0/"


def test_anonymous_embed_visitors_get_a_frameable_explanation(embedding, client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab)
    response = client.get(reverse("portal:embed-instance", args=[instance.pk]))
    assert response.status_code == 200
    assert_frameable_by(response, f"{MOODLE} http://127.0.0.1:8081")
    page = response.content.decode()
    assert "not signed in" in page
    assert f'href="http://testserver/instances/{instance.pk}/"' in page
    assert "blocks cookies" in page  # shown by embed.js when the cookie test fails
    lab_page = client.get(reverse("portal:embed-lab", args=["explore"]))
    assert lab_page.status_code == 200 and 'href="http://testserver/"' in lab_page.content.decode()


def test_embed_lab_opens_the_students_running_copy(embedding, client, student, lab, make_instance):
    make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    running = make_instance(owner=student, lab=lab)
    client.force_login(student)
    response = client.get(reverse("portal:embed-lab", args=["explore"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:embed-instance", args=[running.pk])


def test_embed_lab_offers_a_start_without_a_running_copy(embedding, client, student, lab, hidden_lab):
    client.force_login(student)
    response = client.get(reverse("portal:embed-lab", args=["explore"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-instance-page="/embed/instances/0/"' in page and "Start lab" in page
    assert client.get(reverse("portal:embed-lab", args=["draft"])).status_code == 404


def test_cross_site_cookies_only_with_embedding_and_tls():
    from tests.laborchestrator.test_settings import settings_in_subprocess

    expression = "s.EMBED_CROSS_SITE_COOKIES, getattr(s, 'SESSION_COOKIE_SAMESITE', 'Lax'), " + (
        "getattr(s, 'CSRF_COOKIE_SAMESITE', 'Lax')"
    )
    tls = {"SESSION_COOKIE_SECURE": "1", "EMBED_ALLOWED_ORIGINS": MOODLE}
    assert settings_in_subprocess(tls, expression) == "True None None"
    assert settings_in_subprocess({**tls, "SESSION_COOKIE_SECURE": "0"}, expression) == "False Lax Lax"
    assert settings_in_subprocess({"SESSION_COOKIE_SECURE": "1"}, expression) == "False Lax Lax"
