"""A student's whole session in the browser: sign in, start the lab from the catalog, watch it boot,
use both machines' terminals and screens, type tutorial code into them, tick steps, stop the lab.

One test on purpose: with the `qemu` runtime the machines are real VMs, and booting them is most of
the time this takes.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from labs.models import InstanceMachine, LabInstance
from localcluster.demoimage import BANNER

from .conftest import sign_in
from .lab_data import SCREEN_RESULT, SERIAL_RESULT, make_demo_lab, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BOOT_TIMEOUT_MS = 240_000
TYPE_INTO_VM = "Type this code into the selected machine"  # two TCG guests on shared cores
TERMINAL_TEXT = """el => {
  const terminal = el.terminal;
  if (!terminal) return "";
  const buffer = terminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""
CANVAS_COLOURS = """el => {
  const canvas = el.querySelector("canvas");
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  for (let i = 0; i < pixels.length; i += 4 * 31) {
    colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
  }
  return colours.size;
}"""


def console(page, machine: str, kind: str):
    return page.locator(f"#panel-{machine} .console[data-kind={kind}]")


def wait_for_terminal(page, machine: str, text: str, timeout: float = 30_000) -> str:
    element = console(page, machine, "serial").element_handle()
    page.wait_for_function(
        f"([el, text]) => ({TERMINAL_TEXT})(el).includes(text)", arg=[element, text], timeout=timeout
    )
    return element.evaluate(TERMINAL_TEXT)


def banner(server, machine: str, namespace: str) -> str:
    if server.runtime == "qemu":
        return f"{BANNER} {machine} ("
    return f"localcluster none-runtime console {namespace}/{machine}"


def test_student_session(page, server, django_user_model, screenshot):
    make_user(django_user_model, "student")
    lab = make_demo_lab(runtime=server.runtime)
    page.on("dialog", lambda dialog: dialog.accept())  # "Stop this lab?"

    # --- Catalog and start ----------------------------------------------------------------------
    sign_in(page, server, "student")
    card = page.locator(f'.lab-card[data-lab="{lab.slug}"]')
    expect(card).to_contain_text("alpha")
    expect(card).to_contain_text("Explore the network")
    screenshot(page, "01-catalog")
    card.get_by_role("button", name=f"Start the lab {lab.name}").click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    instance = LabInstance.objects.get(owner__username="student")
    namespace = instance.namespace

    # --- Progress per machine until both run --------------------------------------------------------
    expect(page.locator("#tab-alpha .stage-label")).to_have_text(
        re.compile("Waiting|Scheduled|Booting|Running")
    )
    screenshot(page, "02-starting")
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=BOOT_TIMEOUT_MS)
    for machine in ("alpha", "beta"):
        expect(page.locator(f"#tab-{machine} .stage-label")).to_have_text("Running", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator(f"#tab-{machine} .machine-ip")).to_have_text(re.compile(r"\d+\.\d+\.\d+\.\d+"))
    expect(page.locator("#time-left")).to_have_text(re.compile(r"Time left: (0|59|60):"))

    # --- alpha's terminal shows its banner; the variables of the tutorial are filled in --------------
    wait_for_terminal(page, "alpha", banner(server, "alpha", namespace), timeout=BOOT_TIMEOUT_MS)
    if server.runtime == "qemu":
        wait_for_terminal(page, "alpha", "root@alpha:", timeout=60_000)
    alpha_ip = page.locator("#tab-alpha .machine-ip").inner_text()
    expect(page.locator("#tutorial-page")).to_contain_text(f"alpha's address is {alpha_ip}.")
    screenshot(page, "03-running-terminal")

    # --- Keyboard focus: into the machine on click, back to the page on Escape -----------------------
    console(page, "alpha", "serial").click()
    assert page.evaluate("document.activeElement.closest('.console')?.dataset.kind") == "serial"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.matches('#panel-alpha .console[data-kind=serial]')")

    # --- Type a tutorial code block into the terminal ---------------------------------------------------
    type_buttons = page.locator("#tutorial-page").get_by_role(
        "button", name="Type this code into the selected machine"
    )
    type_buttons.nth(0).click()
    expect(type_buttons.nth(0)).to_have_text("Typed into alpha")
    if server.runtime == "qemu":
        wait_for_terminal(page, "alpha", SERIAL_RESULT)
    else:
        wait_for_terminal(page, "alpha", "echo typed-$((6*7))")  # the fake guest echoes what it gets

    # --- The screen: a noVNC canvas that is not blank; typing through key events ------------------------
    page.locator("#panel-alpha .view-switch").get_by_role("button", name="Screen").click()
    screen = console(page, "alpha", "vnc")
    expect(screen).to_have_attribute("data-state", "connected", timeout=30_000)
    page.wait_for_function(f"el => ({CANVAS_COLOURS})(el) > 1", arg=screen.element_handle(), timeout=60_000)
    if server.runtime == "qemu":
        # tty1 has its own root shell; the command prints on the serial port, which the (hidden)
        # terminal of alpha still shows: proof that Shift, $, (, *, ) and > arrived as typed.
        page.wait_for_timeout(1000)
        type_buttons.nth(1).click()
        expect(type_buttons.nth(1)).to_have_text("Typed into alpha", timeout=20_000)
        wait_for_terminal(page, "alpha", SCREEN_RESULT, timeout=30_000)
    screenshot(page, "04-screen")

    # --- Credentials revealed on request, copied to the clipboard -------------------------------------
    password = InstanceMachine.objects.get(instance=instance, name="alpha").password
    reveal = page.locator("#panel-alpha").get_by_role("button", name="Show login")
    expect(page.locator("#login-alpha")).to_be_hidden()
    reveal.click()
    expect(page.locator("#login-alpha [data-field=password]")).to_have_text(password)
    page.get_by_role("button", name="Copy the password of alpha").click()
    expect(page.get_by_role("button", name="Copy the password of alpha")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == password

    # --- Switch to beta without reloading: its own terminal and banner --------------------------------
    page.get_by_role("tab", name=re.compile("^beta")).click()
    expect(page.locator("#panel-beta")).to_be_visible()
    expect(page.locator("#panel-alpha")).to_be_hidden()
    wait_for_terminal(page, "beta", banner(server, "beta", namespace), timeout=BOOT_TIMEOUT_MS)
    if server.runtime == "qemu":
        wait_for_terminal(page, "beta", "root@beta:", timeout=60_000)
    type_buttons.nth(0).click()
    expect(type_buttons.nth(0)).to_have_text("Typed into beta")
    wait_for_terminal(page, "beta", SERIAL_RESULT if server.runtime == "qemu" else "echo typed-$((6*7))")
    screenshot(page, "05-beta")
    # Typing again within the 2.5 s a "Typed into" message stays: the earlier click's reset must not
    # cut the later message short (it once did, and a quick second click showed "Type into VM").
    type_buttons.nth(0).click()
    expect(type_buttons.nth(0)).to_have_text("Typed into beta")
    page.wait_for_timeout(2000)
    type_buttons.nth(0).click()
    page.wait_for_timeout(1000)  # past the first click's reset, well before the second's
    expect(type_buttons.nth(0)).to_have_text("Typed into beta", timeout=300)

    # --- Steps: ticked at once, the progress bar follows, and it all survives a reload ------------------
    expect(page.locator("#tutorial-progress-text")).to_have_text("0 of 3 steps (0%)")
    page.locator("#tutorial-page .step input").nth(0).check()
    expect(page.locator("#tutorial-progress-text")).to_have_text("1 of 3 steps (33%)")
    page.locator("#tutorial-page .step input").nth(1).check()
    expect(page.locator("#tutorial-progress-text")).to_have_text("2 of 3 steps (66%)")
    assert page.locator("#tutorial-progress").evaluate("el => el.value") == 66
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page-position")).to_have_text("Page 2 of 2")
    expect(page.locator("#tutorial-page")).to_contain_text(f"ping -c 1 {alpha_ip}")
    screenshot(page, "06-steps")
    page.reload()
    expect(page.locator("#tutorial-progress-text")).to_have_text("2 of 3 steps (66%)")
    expect(page.locator("#page-position")).to_have_text("Page 2 of 2")  # the page shown is remembered
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("#tutorial-page .step input").nth(0)).to_be_checked()
    expect(page.locator("#tutorial-page .step input").nth(1)).to_be_checked()

    # --- Tablet width: machines above the tutorial ------------------------------------------------------
    page.set_viewport_size({"width": 768, "height": 1024})
    machines_box = page.locator(".machines-pane").bounding_box()
    tutorial_box = page.locator("#tutorial-pane").bounding_box()
    assert machines_box["y"] + machines_box["height"] <= tutorial_box["y"] + 1
    assert machines_box["width"] <= 768
    wait_for_terminal(page, "alpha", banner(server, "alpha", namespace))
    screenshot(page, "07-tablet")
    page.set_viewport_size({"width": 1366, "height": 820})

    # --- Pause and resume; a warning shortly before the lab runs out of time ----------------------------
    LabInstance.objects.filter(pk=instance.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    page.get_by_role("button", name="Pause every machine of this lab").click()
    expect(page.locator("#instance-status")).to_have_text("Paused", timeout=30_000)
    expect(console(page, "alpha", "serial").locator(".console-overlay")).to_contain_text("paused")
    expect(page.locator("#expiry-warning")).to_have_text(re.compile(r"This lab stops in [45] minutes"))
    expect(page.locator("#time-left")).to_have_text(re.compile(r"Time left: [45]:\d\d"))
    screenshot(page, "07b-paused")
    page.get_by_role("button", name="Resume every machine of this lab").click()
    expect(page.locator("#instance-status")).to_have_text("Running", timeout=30_000)
    expect(console(page, "alpha", "serial")).to_have_attribute("data-state", "connected", timeout=30_000)

    # --- Stop ---------------------------------------------------------------------------------------------
    page.get_by_role("button", name="Stop this lab and delete its machines").click()
    expect(page.locator("#instance-status")).to_have_text("Stopped", timeout=60_000)
    expect(console(page, "alpha", "serial").locator(".console-overlay")).to_contain_text("The lab is stopped")
    expect(page.get_by_role("button", name="Start this lab again")).to_be_visible()
    screenshot(page, "08-stopped")
    assert page.page_errors == []
