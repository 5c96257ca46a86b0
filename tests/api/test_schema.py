"""The OpenAPI schema validates, the docs are served locally, and generated requests find no 500."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings

from laborchestrator.wsgi import application
from labs.models import Lab, LabInstance, LabMachine, VMImage
from tests.api.conftest import bearer
from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage

# Per operation and per user (student, staff): about 30 operations x 2 users x this many examples.
EXAMPLES_PER_OPERATION = 4


def test_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    text = target.read_text()
    assert "/api/instances/{id}/machines/{machine_name}/ticket/:" in text
    assert "jwtAuth" in text


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.django_db
def test_swagger_ui_comes_from_local_static_files(client):
    response = client.get("/api/docs/")
    html = response.content.decode()
    parser = _Urls()
    parser.feed(html)

    assert response.status_code == 200
    assert parser.urls, "the page loads Swagger UI from somewhere"
    for url in parser.urls:
        assert url.startswith("/static/"), url
        assert finders.find(url.removeprefix("/static/")), f"{url} is not a shipped static file"
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)


@pytest.fixture
def connections_kept_open():
    """The WSGI app closes the database connection after each request, which would end the test's
    transaction; Django's own test client disconnects the same handlers."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def populated(student, other_student, instructor, make_instance, media_root) -> None:
    """Something behind most routes, so generated requests reach more than 404s."""
    image = VMImage.objects.create(
        name="Cirros", container_disk_image="a/cirros:1", default_username="cirros"
    )
    lab = Lab.objects.create(name="Pub", slug="pub", namespace_prefix="pub", published=True)
    LabMachine.objects.create(lab=lab, name="vm0", image=image)
    make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    make_instance(owner=other_student, lab=lab, status=LabInstance.Status.FAILED)
    tutorial = Tutorial.objects.create(title="Tut", slug="tut", published=True)
    tutorial.labs.add(lab)
    Step.objects.create(page=TutorialPage.objects.create(tutorial=tutorial, title="P"), text_markdown="S")
    TutorialMedia.objects.create(title="Notes", file=SimpleUploadedFile("notes.txt", b"Hello"))


@pytest.mark.django_db
def test_generated_requests_never_get_a_server_error(connections_kept_open, populated, student, instructor):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    headers = [{"Authorization": bearer(student)}, {"Authorization": bearer(instructor)}]
    failures: list[str] = []
    calls: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            calls.append(case.method)
            for user_headers in headers:
                response = case.call(headers={**(case.headers or {}), **user_headers})
                # 503 is the cluster being unreachable (no cluster here), reported as such; never a 500.
                if response.status_code >= 500 and not (
                    response.status_code == 503 and response.json().get("code") == "cluster_unavailable"
                ):
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        run()

    assert failures == []
    assert len(calls) >= 2 * len(operations)
