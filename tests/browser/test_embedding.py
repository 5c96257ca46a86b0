"""The embed view inside a course page: shown when the framing site is allowed, refused otherwise,
and honest about cookies when the framing site is another site."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import sign_in
from .lab_data import make_demo_lab, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def framed(server, site: str, path: str) -> str:
    return f"{site}/?src={server.url}{path}"


def test_allowed_site_frames_the_lab_and_others_are_refused(page, server, django_user_model, screenshot):
    make_user(django_user_model, "embed-student")
    lab = make_demo_lab(runtime=server.runtime, name="Embedded lab")
    sign_in(page, server, "embed-student")
    path = f"/embed/labs/{lab.slug}/"

    page.goto(framed(server, server.framing_site, path))
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Embedded lab")).to_be_visible()
    expect(frame.get_by_role("button", name="Start the lab Embedded lab")).to_be_visible()
    expect(frame.get_by_role("link", name="Open in a new window")).to_have_attribute("target", "_blank")
    screenshot(page, "embed-allowed")

    refusals: list[str] = []
    page.on(
        "console",
        lambda message: refusals.append(message.text) if "frame-ancestors" in message.text else None,
    )
    page.goto(framed(server, server.foreign_site, path))
    page.wait_for_timeout(1000)
    child = page.frames[1]
    assert not child.url.startswith(server.url) or child.locator("h1").count() == 0
    assert refusals, "Chromium reported no frame-ancestors refusal"
    screenshot(page, "embed-refused")

    # The full pages are never frameable, not even by the allowed site.
    page.goto(framed(server, server.framing_site, "/"))
    page.wait_for_timeout(1000)
    assert page.frames[1].locator("text=Labs").count() == 0


def test_another_site_without_cookies_offers_a_new_window(page, server, django_user_model, screenshot):
    make_user(django_user_model, "cross-student")
    lab = make_demo_lab(runtime=server.runtime, name="Cross-site lab")
    sign_in(page, server, "cross-student")
    # Signed in at the top level, but the iframe belongs to another site: no SameSite=Lax cookie goes
    # along (a production setup with TLS marks them SameSite=None; Secure instead).
    page.goto(framed(server, server.cross_site, f"/embed/labs/{lab.slug}/"))
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Lab Orchestrator")).to_be_visible()
    expect(
        frame.get_by_text("not signed in", exact=False).or_(frame.get_by_text("cannot use your"))
    ).to_be_visible()
    expect(frame.locator("#embed-cookies-blocked")).to_be_visible()
    screenshot(page, "embed-cross-site")
    with page.expect_popup() as popup_info:
        frame.get_by_role("link", name="Open in a new window").click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url == f"{server.url}/"
    expect(popup.get_by_role("button", name="Start the lab Cross-site lab")).to_be_visible()
