"""A student presses Check on a step and sees the result, end to end: the browser, the app under its
server, the local cluster's portforward, SSH into the guest (on the qemu runtime: the demo VM's
dropbear), and back. Click-to-run: the Run button types a command into the machine it names."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from labs.models import Lab, LabInstance, LabMachine, VMImage
from localcluster.demoimage import DEMO_REFERENCE
from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

from .conftest import sign_in
from .lab_data import make_user
from .test_student_workspace import BOOT_TIMEOUT_MS, wait_for_terminal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE = """Leave a note on **beta**:

```{.bash .run machine=beta}
echo "note from $(hostname)" > /tmp/hello
```
"""
# On the qemu runtime the Run button really creates the file. The `none` runtime's console only
# echoes, so there the check passes the second time it runs (its sandbox keeps /tmp between runs).
QEMU_SCRIPT = 'test -s /tmp/hello || { echo "FAIL: /tmp/hello on beta is missing or empty."; exit 1; }'
NONE_SCRIPT = (
    '[ -f /tmp/tried ] || { touch /tmp/tried; echo "FAIL: /tmp/hello on beta is missing or empty."; exit 1; }'
)


def make_checked_lab(runtime: str) -> Lab:
    tag = uuid.uuid4().hex[:6]
    image = VMImage.objects.create(
        name=f"Demo {tag}",
        container_disk_image=DEMO_REFERENCE
        if runtime == "qemu"
        else "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="lab",
        has_ssh_server=True,
        min_memory_mib=96,
    )
    lab = Lab.objects.create(
        name=f"Checked {tag}", slug=f"checked-{tag}", namespace_prefix=f"c{tag}", published=True
    )
    for order, name in enumerate(("alpha", "beta")):
        LabMachine.objects.create(
            lab=lab, name=name, image=image, memory_mib=128, order=order, opens_first=order == 0
        )
    tutorial = Tutorial.objects.create(title="Checked steps", slug=f"checked-{tag}", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="A note", body_markdown=PAGE)
    Step.objects.create(page=page, order=0, text_markdown="Read the page.")
    checked = Step.objects.create(page=page, order=1, text_markdown="Leave the note on beta.")
    StepCheck.objects.create(
        step=checked,
        machine="beta",
        script=QEMU_SCRIPT if runtime == "qemu" else NONE_SCRIPT,
        success_message="beta has your note.",
    )
    return lab


def test_student_presses_check_and_sees_the_result(page, server, django_user_model, screenshot):
    make_user(django_user_model, "checker")
    lab = make_checked_lab(server.runtime)
    sign_in(page, server, "checker")
    page.locator(f'.lab-card[data-lab="{lab.slug}"]').get_by_role(
        "button", name=f"Start the lab {lab.name}"
    ).click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=BOOT_TIMEOUT_MS)
    instance = LabInstance.objects.get(owner__username="checker")

    step = page.locator("#tutorial-page .step").nth(1)
    expect(step.locator("input[type=checkbox]")).to_be_disabled()  # only the check ticks it
    check = step.get_by_role("button", name="Check this step on beta")
    result = step.locator(".check-result")

    # --- Not done yet: the FAIL line, nothing else of the script's output -----------------------
    if server.runtime == "qemu":  # a student reads first; a VM whose guest still boots is "starting"
        page.get_by_role("tab", name=re.compile("^beta")).click()
        wait_for_terminal(page, "beta", "root@beta:", timeout=BOOT_TIMEOUT_MS)
    check.click()
    expect(result).to_have_text("Not yet: /tmp/hello on beta is missing or empty.", timeout=60_000)
    expect(step.locator(".verified-mark")).to_be_hidden()
    screenshot(page, "check-01-failed")

    # --- Run types the block into beta's terminal (its tab opens) and presses Enter ---------------
    run = page.locator("#tutorial-page").get_by_role("button", name=re.compile("^Run: .* beta"))
    page.get_by_role("tab", name=re.compile("^alpha")).click()  # Run switches to beta by itself
    run.click()
    expect(page.locator("#panel-beta")).to_be_visible()
    expect(run).to_have_text("Ran on beta", timeout=20_000)
    if server.runtime == "qemu":
        wait_for_terminal(page, "beta", 'echo "note from $(hostname)" > /tmp/hello')
        page.wait_for_timeout(500)  # the shell runs it

    # --- Check again: verified ----------------------------------------------------------------------
    check.click()
    expect(result).to_have_text("beta has your note.", timeout=60_000)
    expect(step.locator(".verified-mark")).to_be_visible()
    expect(step.locator("input[type=checkbox]")).to_be_checked()
    expect(page.locator("#tutorial-progress-text")).to_have_text("1 of 2 steps (50%), 1 of 1 checks passed")
    screenshot(page, "check-02-verified")

    # --- Verified belongs to this instance: a reload shows it again ---------------------------------
    page.reload()
    expect(page.locator("#tutorial-page .step").nth(1).locator(".verified-mark")).to_be_visible()
    assert instance.step_verifications.count() == 1
    assert page.page_errors == []
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop this lab and delete its machines").click()
    expect(page.locator("#instance-status")).to_have_text("Stopped", timeout=60_000)
