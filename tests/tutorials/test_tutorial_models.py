"""Tutorial model rules: ordering, unique slugs, rendering on save, oversized pages refused."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.test import override_settings

from tutorials.models import Step, Tutorial, TutorialPage

pytestmark = pytest.mark.django_db


@pytest.fixture
def tutorial():
    return Tutorial.objects.create(title="Routing", slug="routing")


def test_pages_come_in_order_then_creation_order(tutorial):
    TutorialPage.objects.create(tutorial=tutorial, title="Third", order=2)
    TutorialPage.objects.create(tutorial=tutorial, title="First", order=0)
    TutorialPage.objects.create(tutorial=tutorial, title="Second a", order=1)
    TutorialPage.objects.create(tutorial=tutorial, title="Second b", order=1)
    assert [page.title for page in tutorial.pages.all()] == ["First", "Second a", "Second b", "Third"]


def test_steps_come_in_order_within_their_page(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    Step.objects.create(page=page, order=5, text_markdown="last")
    Step.objects.create(page=page, order=1, text_markdown="first")
    assert [step.text_markdown for step in page.steps.all()] == ["first", "last"]


def test_slugs_are_unique(tutorial):
    with pytest.raises(IntegrityError):
        Tutorial.objects.create(title="Other", slug="routing")


def test_slug_rule_is_stated_in_full_clean():
    with pytest.raises(ValidationError) as raised:
        Tutorial(title="Bad", slug="not a slug!").full_clean()
    assert "letters, numbers, underscores or hyphens" in " ".join(raised.value.message_dict["slug"])


def test_published_and_visibility(tutorial, student, instructor):
    Tutorial.objects.create(title="Public", slug="public", published=True)
    assert [t.slug for t in Tutorial.objects.visible_to(student)] == ["public"]
    assert {t.slug for t in Tutorial.objects.visible_to(instructor)} == {"public", "routing"}


def test_saving_a_page_renders_its_markdown(tutorial):
    page = TutorialPage.objects.create(
        tutorial=tutorial, title="P", body_markdown="# Hi\n\n<script>x</script>"
    )
    assert page.body_html == "<h1>Hi</h1>\n<p>&lt;script&gt;x&lt;/script&gt;</p>"
    page.refresh_from_db()
    assert page.body_html.startswith("<h1>Hi</h1>")


def test_changing_the_markdown_re_renders_it(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P", body_markdown="old")
    page.body_markdown = "*new*"
    page.save()
    page.refresh_from_db()
    assert page.body_html == "<p><em>new</em></p>"


def test_saving_only_the_markdown_field_saves_its_html_too(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P", body_markdown="old")
    page.body_markdown = "new"
    page.save(update_fields=["body_markdown"])
    page.refresh_from_db()
    assert page.body_html == "<p>new</p>"


def test_saving_other_fields_only_leaves_the_html_alone(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P", body_markdown="text")
    page.title = "Renamed"
    page.save(update_fields=["title"])
    page.refresh_from_db()
    assert (page.title, page.body_html) == ("Renamed", "<p>text</p>")


def test_saving_a_step_renders_its_markdown(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    step = Step.objects.create(page=page, text_markdown="Run `ping {{ vm.web.ip }}`")
    assert step.text_html == "<p>Run <code>ping {{ vm.web.ip }}</code></p>"


@override_settings(TUTORIAL_MARKDOWN_MAX_BYTES=200 * 1024)
def test_a_one_megabyte_page_is_refused_by_full_clean_with_a_message(tutorial):
    page = TutorialPage(tutorial=tutorial, title="Huge", body_markdown="x" * (1024 * 1024))
    with pytest.raises(ValidationError) as raised:
        page.full_clean()
    assert "the limit is 200.0\xa0KB" in " ".join(raised.value.message_dict["body_markdown"])


@override_settings(TUTORIAL_MARKDOWN_MAX_BYTES=1024)
def test_saving_an_oversized_page_without_validation_still_refuses_and_keeps_the_old_one(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P", body_markdown="kept")
    page.body_markdown = "x" * 2048
    with pytest.raises(ValidationError):
        page.save()
    page.refresh_from_db()
    assert (page.body_markdown, page.body_html) == ("kept", "<p>kept</p>")


@override_settings(TUTORIAL_MARKDOWN_MAX_BYTES=1024)
def test_an_oversized_step_is_refused(tutorial):
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    with pytest.raises(ValidationError):
        Step(page=page, text_markdown="x" * 2048).full_clean()
