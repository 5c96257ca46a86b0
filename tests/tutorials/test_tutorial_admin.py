"""Authoring tutorials in the admin, as an instructor does with a browser."""

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labs.models import Lab, VMImage
from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage
from tutorials.progress import step_tick

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PREVIEW_URL = "/admin/tutorials/tutorialpage/preview/"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def instructor_client(client, instructor):
    client.force_login(instructor)
    return client


def management_form(prefix: str, total: int, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def tutorial_form(lab: Lab, pages: list[tuple[str, str]]) -> dict:
    data = {"title": "Routing basics", "slug": "routing-basics", "summary": "Two routers.", "published": "on"}
    data["labs"] = [str(lab.pk)]
    data.update(management_form("pages", len(pages)))
    for number, (title, body) in enumerate(pages):
        data.update({f"pages-{number}-title": title, f"pages-{number}-order": str(number)})
        data[f"pages-{number}-body_markdown"] = body
    return data


def page_form(page: TutorialPage, body: str, steps: list[str]) -> dict:
    data = {"tutorial": str(page.tutorial_id), "title": page.title, "order": str(page.order)}
    data["body_markdown"] = body
    data.update(management_form("steps", len(steps)))
    for number, text in enumerate(steps):
        data.update({f"steps-{number}-order": str(number), f"steps-{number}-text_markdown": text})
    return data


def upload_image(client, title: str = "Topology") -> TutorialMedia:
    image = ("topology.png", PNG)
    response = client.post(
        reverse("admin:tutorials_tutorialmedia_add"),
        {"title": title, "file": SimpleUploadedFile(*image, content_type="image/png")},
    )
    assert response.status_code == 302, response.content
    return TutorialMedia.objects.get(title=title)


def test_instructor_authors_a_two_page_tutorial_with_steps_an_image_and_a_knowledge_box(
    instructor_client, instructor
):
    lab = Lab.objects.create(name="Two routers", slug="two-routers", namespace_prefix="routers")
    media = upload_image(instructor_client)
    assert media.uploaded_by == instructor
    assert media.markdown == f"![Topology]({media.file.url})"

    response = instructor_client.post(
        reverse("admin:tutorials_tutorial_add"),
        tutorial_form(lab, [("Setup", "Log in to `{{ vm.r1.ip }}`."), ("Routing", "Add a route.")]),
    )
    assert response.status_code == 302, response.context["errors"] if response.context else response
    tutorial = Tutorial.objects.get(slug="routing-basics")
    assert list(tutorial.labs.all()) == [lab]
    setup, routing = tutorial.pages.all()

    body = f'{media.markdown}\n\n!!! knowledge "Why routes?"\n    Packets need a next hop.'
    change_url = reverse("admin:tutorials_tutorialpage_change", args=[setup.pk])
    response = instructor_client.post(change_url, page_form(setup, body, ["Ping r2", "Run `ip route`"]))
    assert response.status_code == 302, response.context["errors"] if response.context else response
    setup.refresh_from_db()
    assert f'<img alt="Topology" src="{media.file.url}">' in setup.body_html
    assert '<div class="admonition knowledge">' in setup.body_html
    assert [step.text_html for step in setup.steps.all()] == [
        "<p>Ping r2</p>",
        "<p>Run <code>ip route</code></p>",
    ]

    routing_url = reverse("admin:tutorials_tutorialpage_change", args=[routing.pk])
    response = instructor_client.post(routing_url, page_form(routing, "Add a route.", ["ip route add"]))
    assert response.status_code == 302
    assert Step.objects.filter(page__tutorial=tutorial).count() == 3

    page = instructor_client.get(change_url).content.decode()
    assert '<div class="tutorial-content"><p><img alt="Topology"' in page
    assert "markdown-preview-button" in page
    assert "tutorials/markdown-preview.js" in page
    assert "tutorials/tutorial-content.css" in page


def test_tutorial_form_shows_pages_inline_with_a_preview_and_links_to_steps(instructor_client, make_tutorial):
    tutorial = make_tutorial("ospf")
    page = instructor_client.get(
        reverse("admin:tutorials_tutorial_change", args=[tutorial.pk])
    ).content.decode()
    assert 'name="pages-0-body_markdown"' in page
    assert "markdown-preview-button" in page
    assert reverse("admin:tutorials_tutorialpage_change", args=[tutorial.pages.first().pk]) in page
    assert reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]) in page


@pytest.mark.parametrize("model", ["tutorial", "tutorialpage", "tutorialmedia"])
def test_list_views_search_and_filter(instructor_client, make_tutorial, model):
    make_tutorial("ospf")
    url = reverse(f"admin:tutorials_{model}_changelist")
    assert instructor_client.get(url, {"q": "ospf"}).status_code == 200
    assert instructor_client.get(url).status_code == 200


def test_tutorial_list_links_to_progress(instructor_client, make_tutorial):
    tutorial = make_tutorial("ospf")
    page = instructor_client.get(reverse("admin:tutorials_tutorial_changelist")).content.decode()
    assert reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]) in page


def test_a_one_megabyte_page_is_refused_in_the_admin_and_nothing_is_lost(
    instructor_client, make_tutorial, settings
):
    settings.TUTORIAL_MARKDOWN_MAX_BYTES = 200 * 1024
    page = make_tutorial("ospf").pages.first()
    huge = "Paragraph of text.\n\n" * (1024 * 1024 // 20)
    url = reverse("admin:tutorials_tutorialpage_change", args=[page.pk])
    response = instructor_client.post(url, page_form(page, huge, ["kept step"]))
    assert response.status_code == 200
    assert "the limit is 200.0\xa0KB" in response.content.decode()
    assert response.context["adminform"].form["body_markdown"].value() == huge  # still in the textarea
    page.refresh_from_db()
    assert page.body_markdown == "Text"
    assert not Step.objects.filter(text_markdown="kept step").exists()


def test_preview_returns_sanitised_html_without_saving(instructor_client):
    response = instructor_client.post(
        PREVIEW_URL, {"source": '!!! tip "T"\n    hi\n\n<script>alert(1)</script>[x](javascript:y)'}
    )
    assert response.status_code == 200
    html = json.loads(response.content)["html"]
    assert '<div class="admonition tip">' in html
    assert "&lt;script&gt;" in html
    assert "javascript" not in html
    assert not TutorialPage.objects.exists()


def test_preview_of_an_oversized_text_says_why(instructor_client, settings):
    settings.TUTORIAL_MARKDOWN_MAX_BYTES = 10
    response = instructor_client.post(PREVIEW_URL, {"source": "x" * 100})
    assert response.status_code == 400
    assert "the limit is 10\xa0bytes" in json.loads(response.content)["error"]


def test_preview_wants_post(instructor_client):
    assert instructor_client.get(PREVIEW_URL, {"source": "x"}).status_code == 405


@pytest.mark.parametrize("who", ["student", "anonymous"])
def test_preview_is_refused_to_non_staff(client, student, who):
    if who == "student":
        client.force_login(student)
    response = client.post(PREVIEW_URL, {"source": "# secret"})
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_preview_requires_the_csrf_token(instructor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(instructor)
    assert client.post(PREVIEW_URL, {"source": "x"}).status_code == 403


def test_media_upload_shows_the_url_and_markdown_to_paste(instructor_client):
    media = upload_image(instructor_client)
    page = instructor_client.get(reverse("admin:tutorials_tutorialmedia_change", args=[media.pk])).content
    assert f"![Topology]({media.file.url})".encode() in page
    assert media.file.url.startswith("/media/tutorials/")


def test_media_upload_refuses_svg_with_the_reason(instructor_client):
    response = instructor_client.post(
        reverse("admin:tutorials_tutorialmedia_add"),
        {"title": "Evil", "file": SimpleUploadedFile("x.svg", b"<svg onload=alert(1)>")},
    )
    assert response.status_code == 200
    assert "SVG and HTML are refused" in response.content.decode()
    assert not TutorialMedia.objects.exists()


def test_media_upload_refuses_html_disguised_as_png(instructor_client):
    response = instructor_client.post(
        reverse("admin:tutorials_tutorialmedia_add"),
        {"title": "Evil", "file": SimpleUploadedFile("x.png", b"<html><script>alert(1)</script>")},
    )
    assert "not a valid .png file" in response.content.decode()
    assert not TutorialMedia.objects.exists()


def test_students_cannot_use_the_tutorial_admin(client, student, make_tutorial):
    tutorial = make_tutorial("ospf")
    client.force_login(student)
    for url in (
        reverse("admin:tutorials_tutorial_changelist"),
        reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]),
        reverse("admin:tutorials_tutorialmedia_add"),
    ):
        assert client.get(url).status_code == 302


def progress_view_queries(client, tutorial) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]))
    assert response.status_code == 200
    return len(queries)


def test_progress_view_lists_each_student_with_percent_in_constant_queries(
    instructor_client, make_tutorial, steps_of, student, other_student, django_user_model
):
    tutorial = make_tutorial("ospf")
    first, second, third = steps_of(tutorial)
    step_tick(user=student, step=first)
    for step in (first, second, third):
        step_tick(user=other_student, step=step)

    page = instructor_client.get(reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]))
    text = page.content.decode()
    assert "alice" in text and "1 of 3" in text and "33%" in text
    assert "bob" in text and "3 of 3" in text and "100%" in text

    queries_for_two = progress_view_queries(instructor_client, tutorial)
    for number in range(5):
        user = django_user_model.objects.create_user(username=f"s{number}", password="x-pw-123456")
        step_tick(user=user, step=second)
    assert progress_view_queries(instructor_client, tutorial) == queries_for_two


def test_progress_view_without_ticks_says_so(instructor_client, make_tutorial):
    tutorial = make_tutorial("ospf")
    page = instructor_client.get(reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk]))
    assert "No student has ticked a step" in page.content.decode()


def test_deleting_media_in_the_admin_deletes_the_stored_file(
    instructor_client, django_capture_on_commit_callbacks
):
    one, two = upload_image(instructor_client, "One"), upload_image(instructor_client, "Two")
    paths = [Path(one.file.path), Path(two.file.path)]
    assert all(path.exists() for path in paths)
    with django_capture_on_commit_callbacks(execute=True):
        response = instructor_client.post(
            reverse("admin:tutorials_tutorialmedia_delete", args=[one.pk]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert not paths[0].exists() and paths[1].exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = instructor_client.post(
            reverse("admin:tutorials_tutorialmedia_changelist"),
            {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"},
        )
    assert response.status_code == 302
    assert not paths[1].exists()
    assert not TutorialMedia.objects.exists()


def test_media_a_page_refers_to_cannot_be_deleted_in_the_admin(instructor_client):
    media = upload_image(instructor_client, "Used")
    tutorial = Tutorial.objects.create(title="Networking", slug="networking")
    TutorialPage.objects.create(tutorial=tutorial, title="Topology", body_markdown=media.markdown)
    url = reverse("admin:tutorials_tutorialmedia_delete", args=[media.pk])
    page = instructor_client.get(url).content.decode()
    assert "&quot;Networking&quot;, page &quot;Topology&quot; refers to “Used”" in page
    response = instructor_client.post(url, {"post": "yes"})  # refused: the page is shown again
    assert response.status_code == 200
    assert "refers to “Used”" in response.content.decode()
    assert TutorialMedia.objects.filter(pk=media.pk).exists()
    assert Path(media.file.path).exists()


def test_a_refused_upload_offers_no_markdown_or_link_to_a_file_never_stored(instructor_client, settings):
    settings.TUTORIAL_MEDIA_MAX_BYTES = 1024
    huge = SimpleUploadedFile("huge.png", PNG + b"\x00" * 2048, content_type="image/png")
    response = instructor_client.post(
        reverse("admin:tutorials_tutorialmedia_add"), {"title": "Huge", "file": huge}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "uploads may be at most 1.0\xa0KB" in page
    assert "huge.png" not in page.replace('value="huge.png"', "")  # no snippet, URL or preview
    assert "/media/" not in page
    assert not TutorialMedia.objects.exists()


def test_a_refused_replacement_keeps_showing_the_stored_file(instructor_client, settings):
    media = upload_image(instructor_client)
    settings.TUTORIAL_MEDIA_MAX_BYTES = 1024
    huge = SimpleUploadedFile("huge.png", PNG + b"\x00" * 2048, content_type="image/png")
    url = reverse("admin:tutorials_tutorialmedia_change", args=[media.pk])
    page = instructor_client.post(url, {"title": "Topology", "file": huge}).content.decode()
    assert "uploads may be at most 1.0\xa0KB" in page
    assert f"![Topology]({media.file.url})" in page
    assert "/media/huge.png" not in page


def admin_messages(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in response.context["messages"]]


def test_saving_a_page_with_unknown_variables_warns_and_saves(instructor_client, make_tutorial):
    tutorial = make_tutorial("ospf")
    lab = Lab.objects.create(name="Two routers", slug="two-routers", namespace_prefix="routers")
    image = VMImage.objects.create(
        name="Router", container_disk_image="example.org/router:1", default_username="r"
    )
    for name in ("r1", "r2"):
        lab.machines.create(name=name, image=image)
    tutorial.labs.add(lab)
    page = tutorial.pages.first()
    url = reverse("admin:tutorials_tutorialpage_change", args=[page.pk])
    body = "Ping {{ vm.R2.ip }}.\n\n~~~\nip route"
    response = instructor_client.post(url, page_form(page, body, ["Check {{ vm.r3.ip }}"]), follow=True)

    page.refresh_from_db()
    assert page.body_markdown == body  # saved anyway
    shown = admin_messages(response)
    assert any(level == "success" and "was changed successfully" in text for level, text in shown)
    warnings = [text for level, text in shown if level == "warning"]
    assert warnings == [
        'Page "Page 0": Unknown variable {{ vm.R2.ip }}: machine names are lower-case: did you mean '
        "{{ vm.r2.ip }}? Students would see it as written.",
        'Page "Page 0": Variables you can use here: {{ user.username }}, {{ machine.r1.ip }}, '
        "{{ machine.r1.user }}, {{ machine.r1.password }}, {{ machine.r2.ip }}, {{ machine.r2.user }}, "
        "{{ machine.r2.password }}.",
        'Page "Page 0": The code block opened with ~~~ on line 3 is never closed, so it shows as plain '
        "text. End it with a line of exactly ~~~.",
        'Page "Page 0", step 0: Unknown variable {{ vm.r3.ip }}: no machine of this tutorial\'s labs is '
        'named "r3". Students would see it as written.',
        'Page "Page 0", step 0: Variables you can use here: {{ user.username }}, {{ machine.r1.ip }}, '
        "{{ machine.r1.user }}, {{ machine.r1.password }}, {{ machine.r2.ip }}, {{ machine.r2.user }}, "
        "{{ machine.r2.password }}.",
    ]


def test_saving_a_tutorial_checks_its_pages_against_its_labs(instructor_client):
    lab = Lab.objects.create(name="Two routers", slug="two-routers", namespace_prefix="routers")
    data = tutorial_form(lab, [("Setup", "Log in to `{{ vm.r1.ip }}` as {{ user.name }}.")])
    response = instructor_client.post(reverse("admin:tutorials_tutorial_add"), data, follow=True)

    assert Tutorial.objects.filter(slug="routing-basics").exists()
    warnings = [text for level, text in admin_messages(response) if level == "warning"]
    assert warnings[0] == (
        'Page "Setup": Unknown variable {{ vm.r1.ip }}: this tutorial is not linked to a lab with machines. '
        "Students would see it as written."
    )
    assert warnings[1].startswith(
        'Page "Setup": Unknown variable {{ user.name }}: variables are user.username'
    )
    assert warnings[2] == 'Page "Setup": Variables you can use here: {{ user.username }}.'


def test_a_clean_page_saves_without_warnings(instructor_client, make_tutorial):
    page = make_tutorial("ospf").pages.first()
    url = reverse("admin:tutorials_tutorialpage_change", args=[page.pk])
    response = instructor_client.post(url, page_form(page, "Hello {{ user.username }}", ["Go"]), follow=True)
    assert [level for level, _ in admin_messages(response)] == ["success"]
