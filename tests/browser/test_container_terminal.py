"""A container machine's terminal in the browser: xterm.js over the console proxy to pods/exec on a
real runc container. Typing, the terminal's size following the page, "Type into machine", and a
fresh shell after reconnecting."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from labs.models import Lab, LabMachine
from tests.localcluster_containers.container_helpers import TOOLS, missing
from tutorials.models import Step, Tutorial, TutorialPage

from .conftest import sign_in
from .lab_data import make_user
from .test_student_workspace import TERMINAL_TEXT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE = """Run this in the container:

```
echo container-$((6*7))
```
"""


def terminal_text(page) -> str:
    return page.locator("#panel-tools .console[data-kind=terminal]").evaluate(TERMINAL_TEXT)


def wait_for_text(page, text: str, timeout: float = 20_000) -> None:
    element = page.locator("#panel-tools .console[data-kind=terminal]").element_handle()
    page.wait_for_function(
        f"([el, text]) => ({TERMINAL_TEXT})(el).includes(text)", arg=[element, text], timeout=timeout
    )


def test_a_container_terminal_types_resizes_and_takes_tutorial_code(
    page, server, django_user_model, screenshot
):
    if reason := missing():
        pytest.skip(reason)
    make_user(django_user_model, "ctr-student")
    tag = uuid.uuid4().hex[:6]
    lab = Lab.objects.create(
        name="Containers", slug=f"ctr-{tag}", namespace_prefix=f"ct{tag}", published=True, lifetime_minutes=60
    )
    LabMachine.objects.create(
        lab=lab,
        name="tools",
        kind="container",
        container_image=TOOLS,
        cores=1,
        memory_mib=64,
        opens_first=True,
    )
    tutorial = Tutorial.objects.create(title="Container", slug=f"ctr-{tag}", published=True)
    tutorial.labs.add(lab)
    first = TutorialPage.objects.create(tutorial=tutorial, title="Terminal", order=0, body_markdown=PAGE)
    Step.objects.create(page=first, order=0, text_markdown="tools is `{{ machine.tools.ip }}`.")
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, server, "ctr-student")
    page.locator(f'.lab-card[data-lab="{lab.slug}"]').get_by_role(
        "button", name=f"Start the lab {lab.name}"
    ).click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=60_000)
    ip = page.locator("#tab-tools .machine-ip").inner_text()
    assert re.match(r"\d+\.\d+\.\d+\.\d+", ip)
    expect(page.locator("#tutorial-page")).to_contain_text(f"tools is {ip}.")

    # A shell prompt, then typing with the keyboard.
    terminal = page.locator("#panel-tools .console[data-kind=terminal]")
    expect(terminal).to_have_attribute("data-state", "connected", timeout=30_000)
    wait_for_text(page, "# ")
    terminal.click()
    page.keyboard.type("echo keyboard-$((6*7))\n")
    wait_for_text(page, "keyboard-42")

    # The TTY has xterm.js's size, and follows the page when it changes.
    def stty_size() -> tuple[int, int]:
        marker = uuid.uuid4().hex[:6]
        page.keyboard.type(f"echo {marker} $(stty size) {marker}\n")
        wait_for_text(page, f"{marker} ")
        found = re.findall(rf"{marker} (\d+) (\d+) {marker}", terminal_text(page))
        assert found, terminal_text(page)
        return int(found[-1][0]), int(found[-1][1])

    rows, columns = stty_size()
    cols_js, rows_js = terminal.evaluate("el => [el.terminal.cols, el.terminal.rows]")
    assert (rows, columns) == (rows_js, cols_js)
    page.set_viewport_size({"width": 900, "height": 500})
    page.wait_for_timeout(500)
    smaller = stty_size()
    assert smaller != (rows, columns)
    assert smaller == tuple(reversed(terminal.evaluate("el => [el.terminal.cols, el.terminal.rows]")))
    screenshot(page, "container-terminal")

    # "Type into machine" types the tutorial's code block into the container's shell.
    page.keyboard.press("Escape")
    page.locator("#tutorial-page").get_by_role(
        "button", name="Type this code into the selected machine"
    ).first.click()
    wait_for_text(page, "container-42")
