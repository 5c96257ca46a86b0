"""The instructor's live class view next to a student's session, in two browsers: rows change
without a reload, the instructor watches the student's terminal read-only while the student types,
and a broadcast shows as a banner on the student's page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labs.models import LabInstance

from .conftest import sign_in
from .lab_data import make_demo_lab, make_user
from .test_student_workspace import (
    BOOT_TIMEOUT_MS,
    CANVAS_COLOURS,
    TERMINAL_TEXT,
    banner,
    console,
    wait_for_terminal,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_text(page) -> str:
    return page.locator("#watch-screen").evaluate(TERMINAL_TEXT)


def test_class_view_live_watching_and_broadcast(page, chromium, server, django_user_model, screenshot):
    make_user(django_user_model, "student")
    instructor = make_user(django_user_model, "ines", is_staff=True)
    lab = make_demo_lab(runtime=server.runtime)
    lab.owner = instructor
    lab.save(update_fields=["owner"])

    teacher_context = chromium.new_context(viewport={"width": 1600, "height": 900})
    teacher = teacher_context.new_page()
    teacher.set_default_timeout(15_000)
    sign_in(teacher, server, "ines")
    teacher.goto(f"{server.url}/classroom/labs/{lab.slug}/")
    expect(teacher.locator("#class-totals")).to_have_text(re.compile("^0 students"))

    # --- The student starts the lab: their row appears and turns Running, no reload ------------------
    sign_in(page, server, "student")
    page.locator(f'.lab-card[data-lab="{lab.slug}"]').get_by_role("button", name=re.compile("Start")).click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    instance = LabInstance.objects.get(owner__username="student")
    row = teacher.locator(f'#class-rows tr[data-instance="{instance.pk}"]')
    expect(row).to_contain_text("student")
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=BOOT_TIMEOUT_MS)
    expect(row).to_contain_text("Running", timeout=10_000)
    wait_for_terminal(page, "alpha", banner(server, "alpha", instance.namespace), timeout=BOOT_TIMEOUT_MS)
    if server.runtime == "qemu":
        wait_for_terminal(page, "alpha", "root@alpha:", timeout=60_000)

    # --- A tick and a page change show in the row within seconds ----------------------------------------
    expect(row.locator("[data-field=steps]")).to_have_text("0 / 3")
    page.locator("#tutorial-page .step input").nth(0).check()
    expect(row.locator("[data-field=steps]")).to_have_text("1 / 3", timeout=10_000)
    page.get_by_role("button", name="Next page").click()
    expect(row).to_contain_text("The network", timeout=10_000)
    screenshot(teacher, "class-01-live-row")

    # --- Watching alpha's terminal while the student types -------------------------------------------
    row.get_by_role("button", name="Watch alpha terminal").click()
    expect(teacher.locator("#watch-status")).to_have_text("Watching (read-only).")
    console(page, "alpha", "serial").click()
    page.keyboard.type("echo watched-$((6*7))")
    page.keyboard.press("Enter")
    teacher.wait_for_function(
        f"el => ({TERMINAL_TEXT})(el).includes('echo watched-')",
        arg=teacher.locator("#watch-screen").element_handle(),
        timeout=20_000,
    )
    # The instructor's keystrokes go nowhere: the student's terminal never shows them.
    teacher.locator("#watch-screen").click()
    teacher.keyboard.type("instructor-typed")
    teacher.keyboard.press("Enter")
    page.keyboard.type(" # still-mine")
    wait_for_terminal(page, "alpha", "still-mine")
    teacher.wait_for_function(
        f"el => ({TERMINAL_TEXT})(el).includes('still-mine')",
        arg=teacher.locator("#watch-screen").element_handle(),
    )
    assert "instructor-typed" not in console(page, "alpha", "serial").evaluate(TERMINAL_TEXT)
    assert "instructor-typed" not in watch_text(teacher)
    # The student sees that they are watched.
    expect(page.locator("#class-notices")).to_contain_text("ines is watching your terminal on alpha")
    screenshot(teacher, "class-02-watching")
    screenshot(page, "class-03-student-watched")
    teacher.get_by_role("button", name="Close", exact=True).click()
    expect(page.locator("#class-watch-history")).to_contain_text(
        "Watched 1 time(s); last by ines", timeout=10_000
    )
    # --- Watching alpha's screen: the student's VNC stream, shared; the observer's picture is whole ------
    page.locator("#panel-alpha .view-switch").get_by_role("button", name="Screen").click()
    expect(console(page, "alpha", "vnc")).to_have_attribute("data-state", "connected", timeout=30_000)
    row.get_by_role("button", name="Watch alpha screen").click()
    expect(teacher.locator("#watch-status")).to_have_text("Watching (read-only).", timeout=20_000)
    teacher.wait_for_function(
        f"el => ({CANVAS_COLOURS})(el) > 1",
        arg=teacher.locator("#watch-screen").element_handle(),
        timeout=30_000,
    )
    # The student's own screen stays connected (KubeVirt would have kicked it for a second connection).
    expect(console(page, "alpha", "vnc")).to_have_attribute("data-state", "connected")
    expect(page.locator("#class-notices")).to_contain_text("ines is watching your screen on alpha")
    screenshot(teacher, "class-02b-watching-screen")
    teacher.get_by_role("button", name="Close", exact=True).click()
    expect(page.locator("#class-watch-history")).to_contain_text("Watched 2 time(s)", timeout=10_000)

    # --- A broadcast shows on the student's page as a banner -------------------------------------------
    teacher.locator("#bulk-text").fill("Ten minutes left: save your work.")
    teacher.get_by_role("button", name="Broadcast to all").click()
    expect(teacher.locator("#class-feedback")).to_have_text("Done for 1.")
    expect(page.locator("#class-notices")).to_contain_text("ines: Ten minutes left: save your work.")
    expect(teacher.locator("#class-actions")).to_contain_text("ines Message → student: Ten minutes left")
    expect(teacher.locator("#class-actions")).to_contain_text("ines Watch → student: alpha terminal")
    expect(teacher.locator("#class-actions")).to_contain_text("ines Watch → student: alpha screen")
    screenshot(page, "class-04-banner")
    assert not page.page_errors
    teacher_context.close()
