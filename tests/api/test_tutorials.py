"""Tutorials over the API: ordered pages and steps, variables filled in, progress, staff authoring."""

import pytest

from labs.models import LabInstance
from tutorials.models import Step, StepCompletion, Tutorial, TutorialPage

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(make_lab):
    return make_lab()


@pytest.fixture
def tutorial(lab) -> Tutorial:
    tutorial = Tutorial.objects.create(title="Intro", slug="intro", published=True)
    tutorial.labs.add(lab)
    second = TutorialPage.objects.create(tutorial=tutorial, title="Second", order=2, body_markdown="Bye")
    first = TutorialPage.objects.create(
        tutorial=tutorial, title="First", order=1, body_markdown="Hello **{{ user.username }}**"
    )
    Step.objects.create(page=first, order=2, text_markdown="Log in as `{{ vm.vm0.user }}`")
    Step.objects.create(page=first, order=1, text_markdown="Read")
    Step.objects.create(page=second, order=1, text_markdown="Ping {{ vm.vm0.ip }}")
    return tutorial


def steps_of(tutorial: Tutorial) -> list[Step]:
    return list(Step.objects.filter(page__tutorial=tutorial).order_by("page__order", "order"))


def test_detail_has_ordered_pages_and_steps_with_variables_filled(tutorial, student, client_for):
    body = client_for(student).get("/api/tutorials/intro/").json()

    assert [p["title"] for p in body["pages"]] == ["First", "Second"]
    first = body["pages"][0]
    assert first["body_html"] == "<p>Hello <strong>alice</strong></p>"
    assert [s["text_html"] for s in first["steps"]] == [
        "<p>Read</p>",
        "<p>Log in as <code>{{ vm.vm0.user }}</code></p>",
    ]
    assert "body_markdown" not in first and "text_markdown" not in first["steps"][0]
    assert body["progress"]["percent"] == 0
    assert body["labs"] == [tutorial.labs.get().slug]


def test_instance_variables_are_filled_for_the_owner_only(
    tutorial, lab, student, other_student, client_for, make_instance
):
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STARTING)

    body = client_for(student).get(f"/api/tutorials/intro/?instance={instance.pk}").json()

    assert body["pages"][0]["steps"][1]["text_html"] == "<p>Log in as <code>cirros</code></p>"
    # No address yet while it starts: the variable stays as written.
    assert "{{ vm.vm0.ip }}" in body["pages"][1]["steps"][0]["text_html"]
    assert client_for(other_student).get(f"/api/tutorials/intro/?instance={instance.pk}").status_code == 404
    assert client_for(student).get("/api/tutorials/intro/?instance=x").status_code == 400


def test_a_stopped_instance_fills_in_no_machine_variable(tutorial, lab, student, client_for, make_instance):
    # One rule for all of them: once the machines are gone, neither addresses nor logins are shown.
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)

    body = client_for(student).get(f"/api/tutorials/intro/?instance={instance.pk}").json()

    assert body["pages"][0]["body_html"] == "<p>Hello <strong>alice</strong></p>"
    assert body["pages"][0]["steps"][1]["text_html"] == "<p>Log in as <code>{{ vm.vm0.user }}</code></p>"
    assert body["pages"][1]["steps"][0]["text_html"] == "<p>Ping {{ vm.vm0.ip }}</p>"


def test_tick_untick_and_progress(tutorial, student, other_student, client_for):
    client = client_for(student)
    step_ids = [s.pk for s in steps_of(tutorial)]

    ticked = client.post(f"/api/tutorials/intro/steps/{step_ids[0]}/tick/")
    again = client.post(f"/api/tutorials/intro/steps/{step_ids[0]}/tick/")
    client.post(f"/api/tutorials/intro/steps/{step_ids[2]}/tick/")

    assert ticked.status_code == again.status_code == 200
    assert ticked.json()["ticked_step_ids"] == [step_ids[0]]
    progress = client.get("/api/tutorials/intro/progress/").json()
    assert progress == {
        "user": {"id": student.pk, "username": "alice"},
        "ticked_step_ids": sorted([step_ids[0], step_ids[2]]),
        "ticked": 2,
        "total": 3,
        "percent": 66,
        "score": 0.6667,
        "checked_step_ids": [],
        "verified_step_ids": [],
        "attempt": None,
    }
    assert client.get("/api/tutorials/intro/").json()["pages"][0]["steps"][0]["ticked"] is True
    assert client.delete(f"/api/tutorials/intro/steps/{step_ids[0]}/tick/").json()["percent"] == 33
    # Someone else's ticks are theirs alone.
    assert client_for(other_student).get("/api/tutorials/intro/progress/").json()["ticked"] == 0


def test_ticking_keeps_the_students_running_lab_alive(tutorial, lab, student, client_for, make_instance):
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.RUNNING)

    client_for(student).post(f"/api/tutorials/intro/steps/{steps_of(tutorial)[0].pk}/tick/")

    instance.refresh_from_db()
    assert instance.last_activity_at is not None


def test_progress_of_others_is_for_instructors(tutorial, student, other_student, instructor, client_for):
    StepCompletion.objects.create(user=student, step=steps_of(tutorial)[0])

    assert (
        client_for(other_student).get(f"/api/tutorials/intro/progress/?user={student.pk}").status_code == 403
    )
    staff_view = client_for(instructor).get(f"/api/tutorials/intro/progress/?user={student.pk}")
    assert staff_view.status_code == 200 and staff_view.json()["ticked"] == 1
    assert client_for(instructor).get("/api/tutorials/intro/progress/?user=999999").status_code == 404


def test_lab_progress_lists_everyone_who_worked_on_it(
    tutorial, lab, student, other_student, instructor, client_for, make_instance
):
    StepCompletion.objects.create(user=student, step=steps_of(tutorial)[0])
    make_instance(owner=other_student, lab=lab)

    response = client_for(instructor).get(f"/api/labs/{lab.slug}/progress/")

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "user": {"id": student.pk, "username": "alice"},
            "tutorials": [{"tutorial": "intro", "ticked": 1, "total": 3, "percent": 33}],
        },
        {
            "user": {"id": other_student.pk, "username": "bob"},
            "tutorials": [{"tutorial": "intro", "ticked": 0, "total": 3, "percent": 0}],
        },
    ]
    assert client_for(student).get(f"/api/labs/{lab.slug}/progress/").status_code == 403


def test_unpublished_tutorials_are_invisible_to_students(tutorial, student, instructor, client_for):
    tutorial.published = False
    tutorial.save()
    step = steps_of(tutorial)[0]

    assert client_for(student).get("/api/tutorials/").json()["results"] == []
    assert client_for(student).get("/api/tutorials/intro/").status_code == 404
    assert client_for(student).post(f"/api/tutorials/intro/steps/{step.pk}/tick/").status_code == 404
    assert client_for(instructor).get("/api/tutorials/intro/").status_code == 200


def test_instructors_author_tutorials_pages_and_steps(lab, instructor, client_for):
    client = client_for(instructor)

    created = client.post(
        "/api/tutorials/",
        {"title": "Net", "slug": "net", "labs": [lab.slug], "published": True},
        format="json",
    )
    assert created.status_code == 201, created.content
    page = client.post(
        "/api/tutorials/net/pages/", {"title": "P", "body_markdown": "# Hi\n<script>x</script>"}
    )
    assert page.status_code == 201, page.content
    assert page.json()["body_html"] == "<h1>Hi</h1>\n<p>&lt;script&gt;x&lt;/script&gt;</p>"
    step = client.post("/api/tutorials/net/steps/", {"page": page.json()["id"], "text_markdown": "Do *it*"})
    assert step.status_code == 201, step.content
    assert step.json()["text_html"] == "<p>Do <em>it</em></p>"

    detail = client.get("/api/tutorials/net/").json()
    assert detail["pages"][0]["body_markdown"] == "# Hi\n<script>x</script>"
    assert detail["pages"][0]["steps"][0]["text_markdown"] == "Do *it*"

    edited = client.patch(f"/api/tutorials/net/steps/{step.json()['id']}/", {"text_markdown": "Done"})
    assert edited.json()["text_html"] == "<p>Done</p>"
    assert client.delete(f"/api/tutorials/net/pages/{page.json()['id']}/").status_code == 204
    assert client.delete("/api/tutorials/net/").status_code == 204


def test_authoring_errors_are_field_errors(tutorial, instructor, client_for, settings):
    settings.TUTORIAL_MARKDOWN_MAX_BYTES = 10
    client = client_for(instructor)
    other = Tutorial.objects.create(title="Other", slug="other")
    foreign_page = TutorialPage.objects.create(tutorial=other, title="X")

    too_big = client.post("/api/tutorials/intro/pages/", {"title": "P", "body_markdown": "x" * 11})
    assert too_big.status_code == 400 and list(too_big.json()) == ["body_markdown"]
    duplicate = client.post("/api/tutorials/", {"title": "Again", "slug": "intro"}, format="json")
    assert duplicate.status_code == 400 and list(duplicate.json()) == ["slug"]
    foreign = client.post("/api/tutorials/intro/steps/", {"page": foreign_page.pk, "text_markdown": "x"})
    assert foreign.status_code == 400 and list(foreign.json()) == ["page"]


def test_unknown_variables_and_unclosed_fences_are_saved_with_warnings(tutorial, lab, instructor, client_for):
    client = client_for(instructor)
    body = "Ping {{ vm.nosuch.ip }} and {{ vm.VM0.ip }}, shout {{ x | upper }}.\n\n```\nls"
    page = client.post("/api/tutorials/intro/pages/", {"title": "Typos", "body_markdown": body})

    assert page.status_code == 201, page.content  # warnings never refuse a save
    assert TutorialPage.objects.get(pk=page.json()["id"]).body_markdown == body
    assert page.json()["warnings"] == [
        'Unknown variable {{ vm.nosuch.ip }}: no machine of this tutorial\'s labs is named "nosuch". '
        "Students would see it as written.",
        "Unknown variable {{ vm.VM0.ip }}: machine names are lower-case: did you mean {{ vm.vm0.ip }}? "
        "Students would see it as written.",
        "{{ x | upper }} is not a variable: only plain names are filled in (no filters or expressions). "
        "Students would see it as written.",
        "Variables you can use here: {{ user.username }}, {{ machine.vm0.ip }}, {{ machine.vm0.user }}, "
        "{{ machine.vm0.password }}.",
        "The code block opened with ``` on line 3 is never closed, so it shows as plain text. "
        "End it with a line of exactly ```.",
    ]
    step = client.post(
        "/api/tutorials/intro/steps/", {"page": page.json()["id"], "text_markdown": "{{ vm.vm0.mac }}"}
    )
    assert step.status_code == 201
    assert step.json()["warnings"][0] == (
        "Unknown variable {{ vm.vm0.mac }}: a machine has ip, user, password, not mac. "
        "Students would see it as written."
    )
    fixed = client.patch(
        f"/api/tutorials/intro/steps/{step.json()['id']}/", {"text_markdown": "{{ vm.vm0.ip }}"}
    )
    assert fixed.json()["warnings"] == []
    detail = client.get("/api/tutorials/intro/").json()
    assert sorted(len(p["warnings"]) for p in detail["pages"]) == [0, 0, 5]


def test_students_get_no_warnings(tutorial, student, client_for):
    page = client_for(student).get("/api/tutorials/intro/").json()["pages"][0]
    assert "warnings" not in page and "warnings" not in page["steps"][0]
