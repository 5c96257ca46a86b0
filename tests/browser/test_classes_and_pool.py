"""A student joins a class with its sign-up link in the browser and sees the class's labs; a start
takes a running instance from the lab's pool, opens on a working terminal, and is the student's."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from classes.models import Classroom
from labs import cluster, lifecycle
from labs.models import InstanceMachine, LabInstance

from .conftest import sign_in
from .lab_data import make_demo_lab, make_user
from .test_student_workspace import banner, wait_for_terminal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BOOT_SECONDS = 240


def test_sign_up_with_a_class_code(page, server, django_user_model, screenshot):
    instructor = make_user(django_user_model, "teacher", is_staff=True)
    lab = make_demo_lab(runtime=server.runtime, name="Class lab")
    make_demo_lab(runtime=server.runtime, name="Another lab")
    classroom = Classroom.objects.create(
        name="Networks 101", owner=instructor, code_expires_at=timezone.now() + timedelta(days=1)
    )
    classroom.labs.add(lab)

    page.goto(f"{server.url}/classes/join/")
    page.get_by_label("Class code").fill(classroom.access_code.lower())
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Join Networks 101")).to_be_visible()
    page.get_by_label("User name").fill("newbie")
    page.get_by_label("Email (optional)").fill("newbie@example.org")
    page.locator("#id_password1").fill("a-long-lab-password-7")
    page.get_by_label("Password again").fill("a-long-lab-password-7")
    screenshot(page, "classes-01-sign-up")
    page.get_by_role("button", name="Create account and join").click()

    page.wait_for_url(re.compile(rf"/\?class={classroom.pk}$"))
    expect(page.get_by_role("heading", name="Labs of Networks 101")).to_be_visible()
    card = page.locator(f'.lab-card[data-lab="{lab.slug}"]')
    expect(card).to_contain_text("class: Networks 101")
    expect(page.locator(".lab-card")).to_have_count(1)
    expect(page.locator(".account .who")).to_have_text("newbie")
    screenshot(page, "classes-02-class-labs")
    user = django_user_model.objects.get(username="newbie")
    assert not user.is_staff and list(classroom.members.all()) == [user]

    # A wrong code: plain words, no account made.
    page.context.clear_cookies()
    page.goto(f"{server.url}/classes/join/WRONGCODE123/")
    expect(page.get_by_role("alert")).to_have_text(
        "This class code is not valid. Check it with your instructor."
    )


def test_a_start_takes_a_ready_instance_from_the_pool(page, server, django_user_model, settings, screenshot):
    make_user(django_user_model, "pooled")
    lab = make_demo_lab(runtime=server.runtime, name="Pooled lab")
    lab.ready_instances = 1
    lab.save()
    # The housekeeping round, in this process against the same cluster: start, then refresh to running.
    ready_id = fill_pool(lab)

    sign_in(page, server, "pooled")
    page.locator(f'.lab-card[data-lab="{lab.slug}"]').get_by_role(
        "button", name=f"Start the lab {lab.name}"
    ).click()
    page.wait_for_url(re.compile(rf"/instances/{ready_id}/$"))
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=10_000)
    instance = LabInstance.objects.get(pk=ready_id)
    assert instance.owner.username == "pooled" and instance.handed_over_at is not None and not instance.pooled
    wait_for_terminal(page, "alpha", banner(server, "alpha", instance.namespace), timeout=30_000)
    screenshot(page, "classes-03-pool-hand-over")

    # The login shown is the instance's own, generated when the pool started it and seen by nobody.
    page.locator("#panel-alpha").get_by_role("button", name="Show login").click()
    password = InstanceMachine.objects.get(instance=instance, name="alpha").password
    expect(page.locator("#login-alpha [data-field=password]")).to_have_text(password)


def fill_pool(lab) -> int:
    report = lifecycle.pool_refill()
    assert len(report.started) == 1, report.errors
    (ready_id,) = report.started
    deadline = time.monotonic() + BOOT_SECONDS
    instance = LabInstance.objects.get(pk=ready_id)
    while lifecycle.instance_refresh(instance=instance).status != LabInstance.Status.RUNNING:
        assert time.monotonic() < deadline, instance.last_error
        time.sleep(0.5)
    return ready_id


@pytest.fixture(autouse=True)
def _app_on_the_browser_cluster(browser_cluster, settings):
    """This process's lifecycle calls (the pool's housekeeping) go to the cluster the server uses."""
    local, _ = browser_cluster
    settings.KUBECONFIG = str(local.kubeconfig)
    settings.KUBE_CONTEXT = "laborchestrator"
    settings.KUBE_IN_CLUSTER = False
    cluster.reset_client()
    yield
    cluster.reset_client()
