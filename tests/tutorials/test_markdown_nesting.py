"""Markdown nested too deeply to show (a 6 KB page of "- - - ... x" made Python-Markdown exhaust the
stack, a 500 on save) is refused with a message in the API, the admin and the preview, and nothing
is saved; ordinary nesting still renders."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from tests.api.conftest import bearer
from tests.tutorials.test_tutorial_admin import PREVIEW_URL, page_form
from tutorials.models import Step, TutorialPage
from tutorials.rendering import render_markdown

pytestmark = pytest.mark.django_db

DEEP = {
    "bullets": "- " * 3000 + "x",
    "numbers": "1. " * 2000 + "x",
    "indented bullets": "".join("    " * level + "- item\n" for level in range(300)),
    "quotes": "> " * 500 + "x",
    "a little too deep": "> " * 65 + "x",
}


@pytest.fixture
def staff(instructor) -> Client:
    client = Client(raise_request_exception=False)
    client.defaults["HTTP_AUTHORIZATION"] = bearer(instructor)
    return client


@pytest.mark.parametrize("case", DEEP)
def test_the_api_refuses_a_page_nested_too_deeply_and_saves_nothing(staff, make_tutorial, case):
    tutorial = make_tutorial("nets")
    pages_before = TutorialPage.objects.count()

    response = staff.post(
        "/api/tutorials/nets/pages/",
        json.dumps({"title": "Deep", "body_markdown": DEEP[case]}),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content[:300]
    assert "more than 64 levels deep" in response.json()["body_markdown"][0]
    assert TutorialPage.objects.count() == pages_before
    assert not tutorial.pages.filter(title="Deep").exists()


def test_the_api_refuses_a_step_nested_too_deeply(staff, make_tutorial):
    page = make_tutorial("nets").pages.first()

    response = staff.post(
        "/api/tutorials/nets/steps/",
        json.dumps({"page": page.pk, "text_markdown": DEEP["bullets"]}),
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "more than 64 levels deep" in response.json()["text_markdown"][0]
    assert not Step.objects.filter(text_markdown=DEEP["bullets"]).exists()


def test_the_admin_refuses_it_and_keeps_the_page_as_it_was(client, instructor, make_tutorial):
    client.force_login(instructor)
    page = make_tutorial("nets").pages.first()
    url = reverse("admin:tutorials_tutorialpage_change", args=[page.pk])

    response = client.post(url, page_form(page, DEEP["bullets"], ["kept step"]))

    assert response.status_code == 200
    assert "more than 64 levels deep" in response.content.decode()
    page.refresh_from_db()
    assert page.body_markdown == "Text"


def test_the_preview_says_why(client, instructor):
    client.force_login(instructor)

    response = client.post(PREVIEW_URL, {"source": DEEP["numbers"]})

    assert response.status_code == 400
    assert "more than 64 levels deep" in response.json()["error"]


def test_deep_raw_html_is_text_and_nests_nothing():
    """Raw HTML is escaped by Markdown itself: 40,000 `<div>` are one paragraph of text."""
    html = render_markdown("<div>" * 40_000)

    assert html == "<p>" + "&lt;div&gt;" * 40_000 + "</p>"


def test_the_deepest_allowed_nesting_renders():
    assert render_markdown("> " * 64 + "x").count("<blockquote>") == 64


def test_ordinary_nesting_and_long_lists_still_render():
    nested_list = "".join("    " * level + f"- level {level}\n" for level in range(8))
    note = '!!! note "Careful"\n    > quoted\n    >\n    > - a\n    >     - b\n'
    long_list = "".join(f"- item {number}\n" for number in range(200))

    html = render_markdown(nested_list + "\n" + note + "\n" + long_list)

    assert "level 7" in html
    assert '<div class="admonition note">' in html
    assert html.count("<li>") == 8 + 2 + 200
