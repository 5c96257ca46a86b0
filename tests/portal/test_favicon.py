"""Every page has an icon: browsers ask for /favicon.ico on their own (the admin's pages too)."""

import xml.etree.ElementTree as ElementTree

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/portal/favicon.svg"
    shipped = finders.find(response["Location"].removeprefix("/static/"))
    assert shipped, "not a shipped static file"
    assert ElementTree.parse(shipped).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_pages_name_their_icon(client):
    page = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/portal/favicon.svg" type="image/svg+xml">' in page
