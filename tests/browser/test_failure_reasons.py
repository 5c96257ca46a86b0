"""A lab that cannot start, in the browser: the student reads why in plain words, on the page and on
the machine's console, and the words offer the button the page shows ("Start again"); an instructor
opening the same instance reads the cluster's exact reason."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from labs.models import LabInstance, VMImage

from .conftest import sign_in
from .lab_data import make_demo_lab, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLAIN = "The machine alpha cannot start: its disk image could not be downloaded. Tell your instructor."


def test_a_student_reads_why_the_lab_failed_and_can_start_it_again(
    chromium, page, server, browser_cluster, django_user_model, screenshot
):
    cluster, _ = browser_cluster
    make_user(django_user_model, "failing-student")
    make_user(django_user_model, "failing-instructor", is_staff=True)
    lab = make_demo_lab(runtime=server.runtime, name="A lab whose image is gone")
    reference = f"registry.example.org/labs/gone-{uuid.uuid4().hex[:8]}:1"
    image = VMImage.objects.create(name=reference, container_disk_image=reference, default_username="lab")
    lab.machines.update(image=image)
    cluster.faults.missing_image(reference)  # the qemu runtime's store lacks it anyway
    try:
        sign_in(page, server, "failing-student")
        page.locator(f'.lab-card[data-lab="{lab.slug}"]').get_by_role(
            "button", name=f"Start the lab {lab.name}"
        ).click()
        page.wait_for_url(re.compile(r"/instances/\d+/$"))
        first_url = page.url

        expect(page.locator("#instance-status")).to_have_text("Failed", timeout=60_000)
        message = page.locator("#instance-message")
        expect(message).to_contain_text(PLAIN)
        for internal in ("rpc error", "ErrImagePull", "Back-off", "127.0.0.1", reference):
            expect(message).not_to_contain_text(internal)
        expect(page.locator("#tab-alpha .stage-label")).to_have_text("Failed")
        overlay = page.locator("#panel-alpha .console[data-kind=serial] .console-overlay")
        expect(overlay).to_be_visible()
        expect(overlay).to_contain_text(PLAIN)
        expect(overlay).to_contain_text(
            "Click \u201cStart again\u201d above to start a new copy of this lab."
        )
        # The words and the buttons agree: "Start again" is there, nothing to stop.
        start_again = page.get_by_role("button", name="Start this lab again")
        expect(start_again).to_be_visible()
        expect(page.get_by_role("button", name="Stop this lab and delete its machines")).to_be_hidden()
        screenshot(page, "failure-01-student")

        # An instructor opening the instance reads the cluster's own words.
        instance = LabInstance.objects.get(owner__username="failing-student")
        staff_context = chromium.new_context(viewport={"width": 1366, "height": 820})
        try:
            staff_page = staff_context.new_page()
            sign_in(staff_page, server, "failing-instructor")
            staff_page.goto(f"{server.url}/instances/{instance.pk}/")
            staff_message = staff_page.locator("#instance-message")
            expect(staff_message).to_contain_text("Machine alpha: ", timeout=15_000)
            expect(staff_message).to_contain_text(reference)
            screenshot(staff_page, "failure-02-instructor")
        finally:
            staff_context.close()

        start_again.click()
        page.wait_for_url(lambda url: re.search(r"/instances/\d+/$", url) is not None and url != first_url)
        assert LabInstance.objects.filter(owner__username="failing-student").count() == 2
        assert page.page_errors == []
    finally:
        cluster.faults.clear()
