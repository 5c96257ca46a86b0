"""Authoring checks in the admin: the check inline on the step's page, its machine checked against
the tutorial's labs, and "Try on a running instance" showing the author the whole output."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from labs import lifecycle
from tests.conftest import require_tool
from tests.labs.conftest import wait_until_running
from tutorials.models import CheckRun, Step, StepCheck, StepVerification, Tutorial, TutorialPage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def step(make_lab, image):
    image.has_ssh_server = True
    image.save()
    lab = make_lab(machines=1)
    tutorial = Tutorial.objects.create(title="T", slug=f"t-{lab.slug}", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    return Step.objects.create(page=page, text_markdown="Do it")


@pytest.fixture
def admin_client(instructor) -> Client:
    client = Client()
    client.force_login(instructor)
    return client


def step_form(step: Step, **check) -> dict:
    data = {
        "page": step.page_id,
        "order": 0,
        "weight": 2,
        "text_markdown": "Do it",
        "step_check-TOTAL_FORMS": "1",
        "step_check-INITIAL_FORMS": "0",
        "step_check-MIN_NUM_FORMS": "0",
        "step_check-MAX_NUM_FORMS": "1",
    }
    data.update({f"step_check-0-{key}": value for key, value in check.items()})
    return data


def test_a_check_is_added_on_the_steps_page(step, admin_client):
    url = reverse("admin:tutorials_step_change", args=[step.pk])
    form = step_form(step, machine="vm0", shell="sh", script="exit 0", timeout_seconds=15)
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    assert StepCheck.objects.get(step=step).script == "exit 0"
    step.refresh_from_db()
    assert step.weight == 2


def test_a_check_on_a_missing_machine_or_one_without_ssh_is_refused(step, admin_client, image):
    url = reverse("admin:tutorials_step_change", args=[step.pk])
    missing = admin_client.post(
        url, step_form(step, machine="nope", shell="sh", script="exit 0", timeout_seconds=15)
    )
    assert "has no machine named nope" in missing.content.decode()
    image.has_ssh_server = False
    image.save()
    no_ssh = admin_client.post(
        url, step_form(step, machine="vm0", shell="sh", script="exit 0", timeout_seconds=15)
    )
    assert "Checks need an SSH server in the image" in no_ssh.content.decode()
    assert not StepCheck.objects.exists()


def test_try_on_a_running_instance_shows_the_whole_output(step, admin_client, instructor, app_cluster):
    require_tool("busybox", "busybox-static")
    StepCheck.objects.create(step=step, machine="vm0", script='echo "line one"; echo "FAIL: not yet"; exit 3')
    instance = lifecycle.instance_start(user=instructor, lab=step.page.tutorial.labs.get())
    try:
        wait_until_running(instance)
        url = reverse("admin:tutorials_step_try_check", args=[step.pk])
        assert f'value="{instance.pk}"' in admin_client.get(url).content.decode()
        page = admin_client.post(url, {"instance": instance.pk}).content.decode()
        assert "Result: Failed" in page
        assert "line one" in page and "not yet" in page
        run = CheckRun.objects.get()
        assert run.trial and run.exit_status == 3
        assert not StepVerification.objects.exists()
    finally:
        lifecycle.instance_stop(instance=instance)


def test_students_cannot_open_the_try_page(step, student):
    client = Client()
    client.force_login(student)
    response = client.get(reverse("admin:tutorials_step_try_check", args=[step.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
