"""Step checks through the API, against the local cluster (its `none` runtime's guests answer SSH in
a sandbox per guest, localcluster/runtimes/fakessh.py): what the student sees, the attempt model,
one check at a time, rate limits, and that scripts and outputs never reach students."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from django.test import Client
from django.urls import reverse

from labs import lifecycle
from labs.models import LabInstance, LabMachine
from tests.conftest import require_tool
from tests.labs.conftest import wait_until_running
from tutorials.models import (
    CheckRun,
    Step,
    StepCheck,
    StepCompletion,
    StepVerification,
    Tutorial,
    TutorialPage,
)
from tutorials.progress import tutorial_progress

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "grep -q secret-answer-42 /tmp/answer"
RETRY_SCRIPT = """
if [ -f /tmp/second-time ]; then echo "all good"; exit 0; fi
touch /tmp/second-time
echo "checking the web server"
echo "FAIL: no file /tmp/second-time yet"
echo "some noise after the FAIL line"
exit 1
"""


@pytest.fixture
def checked(make_lab, image, settings):
    """A published tutorial on a lab with SSH machines: one step checked on vm0, one step without."""
    require_tool("busybox", "busybox-static")
    image.has_ssh_server = True
    image.save()
    lab = make_lab(machines=2, instances_per_user=3)
    tutorial = Tutorial.objects.create(title="Checks", slug=f"checks-{lab.slug}", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="One", order=0)
    plain = Step.objects.create(page=page, order=0, text_markdown="Read this")
    step = Step.objects.create(page=page, order=1, text_markdown="Make the check pass", weight=3)
    check = StepCheck.objects.create(step=step, machine="vm0", script=RETRY_SCRIPT)
    return {"lab": lab, "tutorial": tutorial, "page": page, "plain": plain, "step": step, "check": check}


def start(user, lab) -> LabInstance:
    instance = lifecycle.instance_start(user=user, lab=lab)
    wait_until_running(instance)
    return instance


@pytest.fixture
def instance(app_cluster, checked, student):
    instance = start(student, checked["lab"])
    yield instance
    lifecycle.instance_stop(instance=instance)


def check_url(checked) -> str:
    return f"/api/tutorials/{checked['tutorial'].slug}/steps/{checked['step'].pk}/check/"


def press_check(client, checked, instance, **extra):
    return client.post(check_url(checked), {"instance": instance.pk, **extra}, format="json")


def test_failing_then_passing_verifies_the_step_on_that_instance(checked, instance, student, client_for):
    client = client_for(student)
    first = press_check(client, checked, instance)
    assert first.status_code == 200
    body = first.json()
    assert body["run"]["result"] == "failed"
    # Only the last FAIL: line, not the script's other output.
    assert body["run"]["message"] == "no file /tmp/second-time yet"
    assert "noise" not in json.dumps(body) and "output" not in body["run"]
    assert body["verified"] is False

    second = press_check(client, checked, instance).json()
    assert second["run"]["result"] == "passed"
    assert second["run"]["message"] == "Verified."
    assert second["verified"] is True
    assert second["progress"]["verified_step_ids"] == [checked["step"].pk]
    # The checked step weighs 3 of 4: 75 % without ticking the other.
    assert second["progress"]["percent"] == 75
    assert StepVerification.objects.filter(instance=instance, step=checked["step"]).exists()


def test_a_new_instance_starts_unverified_and_the_best_attempt_stays(
    checked, instance, student, client_for, app_cluster
):
    client = client_for(student)
    press_check(client, checked, instance)
    assert press_check(client, checked, instance).json()["verified"] is True
    lifecycle.instance_stop(instance=instance)
    second = start(student, checked["lab"])
    try:
        tutorial = client.get(f"/api/tutorials/{checked['tutorial'].slug}/?instance={second.pk}").json()
        step = tutorial["pages"][0]["steps"][1]
        assert step["verified"] is False and step["ticked"] is False
        assert tutorial["progress"]["attempt"] == second.pk
        # Without an instance: the best attempt, the first one.
        best = client.get(f"/api/tutorials/{checked['tutorial'].slug}/progress/").json()
        assert best["attempt"] == instance.pk and best["verified_step_ids"] == [checked["step"].pk]
        # The new attempt's first check runs on a fresh machine: it fails again.
        assert press_check(client, checked, second).json()["run"]["result"] == "failed"
    finally:
        lifecycle.instance_stop(instance=second)


def test_a_checked_step_cannot_be_ticked_by_hand(checked, instance, student, client_for):
    client = client_for(student)
    url = f"/api/tutorials/{checked['tutorial'].slug}/steps/{checked['step'].pk}/tick/"
    refused = client.post(url)
    assert refused.status_code == 409
    assert "press Check" in refused.json()["detail"]
    assert not StepCompletion.objects.filter(step=checked["step"]).exists()


def test_failure_message_and_last_line_when_no_fail_line(checked, instance, student, client_for):
    client = client_for(student)
    checked["check"].script = "echo first; echo 'the last line'; exit 2"
    checked["check"].save()
    assert press_check(client, checked, instance).json()["run"]["message"] == "the last line"
    checked["check"].failure_message = "Start the web server first."
    checked["check"].save()
    CheckRun.objects.all().delete()
    assert press_check(client, checked, instance).json()["run"]["message"] == "Start the web server first."


def test_a_script_that_never_ends_times_out_with_a_clear_message(checked, instance, student, client_for):
    checked["check"].script = "sleep 100"
    checked["check"].timeout_seconds = 1
    checked["check"].save()
    started = time.monotonic()
    body = press_check(client_for(student), checked, instance).json()
    assert time.monotonic() - started < 15
    assert body["run"]["result"] == "error"
    assert body["run"]["message"] == "The check did not finish within 1 seconds."
    # The next check works.
    checked["check"].script = "exit 0"
    checked["check"].save()
    assert press_check(client_for(student), checked, instance).json()["run"]["result"] == "passed"


def test_a_paused_or_stopped_lab_is_not_running_not_a_failed_check(checked, instance, student, client_for):
    client = client_for(student)
    lifecycle.instance_pause(instance=instance)
    paused = press_check(client, checked, instance).json()["run"]
    assert (paused["result"], paused["message"]) == (
        "not_running",
        "The lab is paused: resume it, then check again.",
    )
    lifecycle.instance_stop(instance=instance)
    stopped = press_check(client, checked, instance).json()["run"]
    assert stopped["result"] == "not_running"
    assert not StepVerification.objects.exists()


def test_one_check_at_a_time_per_instance(checked, instance, student, client_for):
    CheckRun.objects.create(instance=instance, step=checked["step"], user=student)  # one running
    refused = press_check(client_for(student), checked, instance)
    assert refused.status_code == 409
    assert "already running" in refused.json()["detail"]


def test_a_check_running_when_the_lab_stops_is_cancelled(checked, instance, student, client_for):
    checked["check"].script = "sleep 30"
    checked["check"].save()
    answers = {}

    def press() -> None:
        answers["response"] = press_check(client_for(student), checked, instance)

    thread = threading.Thread(target=press)
    thread.start()
    deadline = time.monotonic() + 20
    while not CheckRun.objects.filter(result=CheckRun.Result.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)  # the script is running by now
    lifecycle.instance_stop(instance=LabInstance.objects.get(pk=instance.pk))
    thread.join(30)
    run = answers["response"].json()["run"]
    assert run["result"] == "cancelled"
    assert run["message"] == "The check was cancelled: the lab stopped while it ran."


def test_another_students_instance_cannot_be_checked(checked, instance, other_student, client_for):
    response = press_check(client_for(other_student), checked, instance)
    assert response.status_code == 404
    assert not CheckRun.objects.exists()


def test_checking_is_rate_limited(checked, instance, student, client_for, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "step_check": "2/minute",
        },
    }
    client = client_for(student)
    assert [press_check(client, checked, instance).status_code for _ in range(3)] == [200, 200, 429]


def test_check_runs_are_logged_with_user_step_result_and_duration(
    checked, instance, student, client_for, caplog
):
    with caplog.at_level(logging.INFO, logger="tutorials.checks"):
        press_check(client_for(student), checked, instance)
    run = CheckRun.objects.get()
    assert (run.user, run.step, run.result) == (student, checked["step"], CheckRun.Result.FAILED)
    assert run.duration_ms is not None and run.exit_status == 1
    assert "checking the web server" in run.output  # kept for staff
    line = next(r.getMessage() for r in caplog.records if r.name == "tutorials.checks")
    assert f"user={student.pk}" in line and f"step={checked['step'].pk}" in line and "result=failed" in line


def test_staff_try_a_check_on_their_own_instance_and_see_the_output(
    checked, instructor, client_for, app_cluster
):
    mine = start(instructor, checked["lab"])
    try:
        body = press_check(client_for(instructor), checked, mine, trial=True).json()
        assert body["run"]["trial"] is True
        assert body["run"]["exit_status"] == 1
        assert "some noise after the FAIL line" in body["run"]["output"]
        assert body["verified"] is False
        assert not StepVerification.objects.exists()
    finally:
        lifecycle.instance_stop(instance=mine)


def test_scripts_never_reach_students(checked, instance, student, client_for):
    checked["check"].script = SECRET
    checked["check"].save()
    client = client_for(student)
    slug = checked["tutorial"].slug
    for url in (
        f"/api/tutorials/{slug}/",
        f"/api/tutorials/{slug}/?instance={instance.pk}",
        f"/api/tutorials/{slug}/steps/",
        f"/api/tutorials/{slug}/steps/{checked['step'].pk}/",
        f"/api/tutorials/{slug}/pages/",
        f"/api/tutorials/{slug}/progress/",
    ):
        text = client.get(url).content.decode()
        assert "secret-answer-42" not in text, url
    browser = Client()
    browser.force_login(student)
    page = browser.get(reverse("portal:instance", args=[instance.pk]))
    assert page.status_code == 200 and "secret-answer-42" not in page.content.decode()
    result = press_check(client, checked, instance).content.decode()
    assert "secret-answer-42" not in result and "grep" not in result
    step = client.get(f"/api/tutorials/{slug}/steps/{checked['step'].pk}/").json()
    assert step["check"] == {"machine": "vm0"}


def test_staff_read_and_write_checks_in_the_api(checked, instructor, client_for):
    client = client_for(instructor)
    url = f"/api/tutorials/{checked['tutorial'].slug}/steps/{checked['step'].pk}/"
    assert client.get(url).json()["check"]["script"] == RETRY_SCRIPT
    changed = client.patch(
        url, {"check": {"machine": "vm1", "script": "exit 0", "timeout_seconds": 30}}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert StepCheck.objects.get(step=checked["step"]).machine == "vm1"
    too_long = client.patch(
        url, {"check": {"machine": "vm1", "script": "exit 0", "timeout_seconds": 121}}, format="json"
    )
    assert too_long.status_code == 400 and "timeout_seconds" in too_long.json()["check"]
    missing = client.patch(url, {"check": {"machine": "nope", "script": "exit 0"}}, format="json")
    assert missing.status_code == 400
    assert "has no machine named nope" in missing.json()["check"]["machine"][0]
    assert client.patch(url, {"check": None}, format="json").status_code == 200
    assert not StepCheck.objects.filter(step=checked["step"]).exists()


def test_a_check_on_a_machine_without_ssh_is_refused_at_save(checked, instructor, client_for, image):
    image.has_ssh_server = False
    image.save()
    url = f"/api/tutorials/{checked['tutorial'].slug}/steps/{checked['step'].pk}/"
    refused = client_for(instructor).patch(
        url, {"check": {"machine": "vm0", "script": "exit 0"}}, format="json"
    )
    assert refused.status_code == 400
    assert "Checks need an SSH server in the image" in refused.json()["check"]["machine"][0]
    # And the lab's side: a machine whose checks need SSH cannot switch to an image without it.
    machine = LabMachine.objects.get(lab=checked["lab"], name="vm0")
    lab_url = f"/api/labs/{checked['lab'].slug}/machines/vm0/"
    response = client_for(instructor).patch(lab_url, {"image": image.pk}, format="json")
    assert response.status_code == 400
    assert "Checks need an SSH server in the image" in json.dumps(response.json())
    machine.refresh_from_db()


def test_checks_open_the_next_page(checked, instance, student, client_for):
    tutorial = checked["tutorial"]
    tutorial.checks_gate_pages = True
    tutorial.save()
    TutorialPage.objects.create(tutorial=tutorial, title="Two", order=1, body_markdown="After the check")
    client = client_for(student)
    url = f"/api/tutorials/{tutorial.slug}/?instance={instance.pk}"
    pages = client.get(url).json()["pages"]
    assert pages[1]["locked"] is True and pages[1]["body_html"] == "" and pages[1]["steps"] == []
    press_check(client, checked, instance)
    press_check(client, checked, instance)
    pages = client.get(url).json()["pages"]
    assert pages[1]["locked"] is False and "After the check" in pages[1]["body_html"]


def test_progress_counts_the_best_attempt_for_grades(checked, instance, student, client_for):
    press_check(client_for(student), checked, instance)
    press_check(client_for(student), checked, instance)
    progress = tutorial_progress(student, checked["tutorial"])
    assert progress.attempt_id == instance.pk and progress.all_checks_passed
    assert progress.score == 0.75
