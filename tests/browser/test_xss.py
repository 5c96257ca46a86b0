"""A tutorial (or a value filled into it) that carries script never runs it in the student's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labs.models import LabInstance
from tutorials.models import Step, Tutorial, TutorialPage

from .conftest import sign_in
from .lab_data import make_demo_lab, make_user, record_instance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYLOAD = "window.__xss = (window.__xss || 0) + 1; alert(document.domain)"
MARKDOWN = f"""Plain text first.

<script>{PAYLOAD}</script>
<img src="x" onerror="{PAYLOAD}">
<svg onload="{PAYLOAD}"><circle r="1"/></svg>
<iframe srcdoc="<script>parent.{PAYLOAD}</script>"></iframe>
<div id="xss-injected" style="position:fixed;inset:0" onmouseover="{PAYLOAD}">covering div</div>
<a href="javascript:{PAYLOAD}" id="xss-link">a javascript: link</a>
<form action="javascript:{PAYLOAD}"><button id="xss-button">submit</button></form>

[markdown link](javascript:alert(1))

```
<img src=x onerror="{PAYLOAD}">
```
"""
# Short enough for InstanceMachine.password (128 characters; PostgreSQL enforces it).
HOSTILE_PASSWORD = '"><img src=x onerror="alert(1);window.__xss=1"><script>alert(2);window.__xss=1</script>'
assert len(HOSTILE_PASSWORD) <= 128


def test_script_in_a_tutorial_does_not_run(page, server, django_user_model, screenshot):
    student = make_user(django_user_model, "xss-student")
    lab = make_demo_lab(runtime=server.runtime, name='Lab <img src=x onerror="alert(1)">')
    tutorial = Tutorial.objects.get(labs=lab)
    hostile = TutorialPage.objects.create(
        tutorial=tutorial, title="<b>Page</b> title", order=5, body_markdown=MARKDOWN
    )
    Step.objects.create(page=hostile, text_markdown=f"Password: {{{{ vm.alpha.password }}}} {MARKDOWN}")
    # Requested: its machines' variables are filled in (a stopped instance fills in none), and the
    # page asks no cluster about it.
    instance = record_instance(
        owner=student, lab=lab, password=HOSTILE_PASSWORD, status=LabInstance.Status.REQUESTED
    )
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    sign_in(page, server, "xss-student")
    page.goto(f"{server.url}/instances/{instance.pk}/")
    expect(page.get_by_role("heading", name="Your terminal")).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    page.get_by_role("button", name="Next page").click()
    expect(page.get_by_role("heading", name="<b>Page</b> title")).to_be_visible()
    content = page.locator("#tutorial-page")
    expect(content).to_contain_text("Plain text first.")
    # The variable is filled in as text, the code block shows its markup as text.
    expect(content).to_contain_text(HOSTILE_PASSWORD)
    expect(content.locator("pre").first).to_contain_text("<img src=x onerror=")
    page.get_by_role("button", name="Show login").first.click()
    expect(page.locator("#panel-alpha [data-field=password]")).to_have_text(HOSTILE_PASSWORD)
    # Give anything that would fire a chance to: hover, click the links and the button.
    page.mouse.move(200, 300)
    for selector in ("#xss-link", "#xss-button", "text=markdown link"):
        if content.locator(selector).count():
            content.locator(selector).first.click(no_wait_after=True)
    page.wait_for_timeout(500)
    screenshot(page, "xss-tutorial")

    assert dialogs == []
    assert page.evaluate("window.__xss") is None
    assert content.locator("script, iframe, svg, [onerror], [onload], [onmouseover], form").count() == 0
    assert content.locator("#xss-injected[style]").count() == 0
    assert page.locator("[onerror], [onload], [onmouseover], script:not([type])").count() == 0
    assert page.title().startswith('Lab <img src=x onerror="alert(1)">')
    assert page.page_errors == []
