"""The OpenAPI schema validates, the docs are served locally, and generated requests find no 500.

The fuzz run is part of `make test` and deterministic (derandomized, fixed shapes): schemathesis
generates valid and invalid requests from the schema, then every operation, and the site's other
URLs, get the hostile shapes of issue 21 (depth, encodings, sizes, headers, ids). Under a minute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from laborchestrator.wsgi import application
from labs.models import Lab, LabInstance, LabMachine, VMImage
from tests.api.conftest import bearer
from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage

# Per operation, generation mode (valid, invalid) and user (student, staff): 56 x 2 x 2 x this many.
EXAMPLES_PER_OPERATION = 3


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


@dataclass(frozen=True)
class Sample:
    """What `populated` made: something behind most routes, so requests reach more than 404s."""

    ids: dict[str, int]  # by the collection a path's `{id}` belongs to


@pytest.fixture
def populated(student, other_student, instructor, make_instance, media_root) -> Sample:
    image = VMImage.objects.create(
        name="Cirros", container_disk_image="a/cirros:1", default_username="cirros"
    )
    lab = Lab.objects.create(name="Pub", slug="pub", namespace_prefix="pub", published=True)
    LabMachine.objects.create(lab=lab, name="vm0", image=image)
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    make_instance(owner=other_student, lab=lab, status=LabInstance.Status.FAILED)
    tutorial = Tutorial.objects.create(title="Tut", slug="tut", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    step = Step.objects.create(page=page, text_markdown="S")
    media = TutorialMedia.objects.create(title="Notes", file=SimpleUploadedFile("notes.txt", b"Hello"))
    ids = {
        "images": image.pk,
        "instances": instance.pk,
        "media": media.pk,
        "pages": page.pk,
        "steps": step.pk,
    }
    return Sample(ids=ids)


def is_server_error(response) -> bool:
    """A 5xx, except the 503 that says the cluster is unreachable (there is no cluster here)."""
    if response.status_code < 500:
        return False
    return not (response.status_code == 503 and response.json().get("code") == "cluster_unavailable")


def api_operations() -> list:
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    return operations


@pytest.mark.django_db
def test_generated_requests_never_get_a_server_error(connections_kept_open, populated, student, instructor):
    headers = [{"Authorization": bearer(student)}, {"Authorization": bearer(instructor)}]
    failures: list[str] = []
    calls: list[str] = []
    operations = api_operations()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                calls.append(case.method)
                for user_headers in headers:
                    response = case.call(headers={**(case.headers or {}), **user_headers})
                    if is_server_error(response):
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

            run()

    assert failures == []
    assert len(calls) >= 4 * len(operations)


# --- The hostile shapes of issue 21, at every operation --------------------------------------------

# Every field name the API's bodies have: one body sets them all to the hostile value.
FIELDS = [
    "lab", "name", "slug", "title", "summary", "description", "published", "labs", "image", "cores",
    "memory_mib", "order", "opens_first", "cloud_init_user_data", "namespace_prefix", "instances_per_user",
    "lifetime_minutes", "idle_timeout_minutes", "ready_instances", "container_disk_image",
    "default_username", "has_vnc", "has_serial_console", "min_memory_mib", "min_cores", "kind", "page",
    "body_markdown",
    "text_markdown", "username", "password", "refresh", "file",
]  # fmt: skip
HOSTILE_VALUES = [
    "\x00", "a\x00b", "\ud800", "\udfff", "²", "٣", "9" * 30, -1, 0, 2**64, 1e308, -0.0, True, None,
    "", "x" * 10_000, [], {}, ["\x00"], {"\x00": 1}, [[[[[[["deep"]]]]]]],
]  # fmt: skip
HOSTILE_QUERY_VALUES = ["\x00", "²", "٣", "9" * 30, "-1", "1.5", "x" * 3000, "[]", "%"]
HOSTILE_PATH_VALUES = ["%00", "%C2%B2", "9" * 30, "-1", "x" * 300, "%ED%A0%80", "%FF", "..%2F..%2Fetc"]
COMMON_QUERY = ["page", "page_size", "format", "force", "instance", "user", "lab", "status", "ordering"]
# Far past Python's recursion limit, and under the body size limit of the run.
DEEP_JSON = b"[" * 30_000 + b"]" * 30_000
BOUNDARY_BODY = b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
# Limits lowered for the run, so "too large" and "too many" stay small and quick.
MAX_BODY = 64 * 1024
MAX_FIELDS = 100


@dataclass(frozen=True)
class Hostile:
    label: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"lab": value}
    return value


def multipart(fields: list[tuple[str, str]], boundary: str = "B") -> bytes:
    parts = b"".join(BOUNDARY_BODY % (name.encode(), value.encode()) for name, value in fields)
    return parts + f"--{boundary}--\r\n".encode()


def body_shapes(path: str) -> Iterator[Hostile]:
    for value in HOSTILE_VALUES:
        body = json.dumps(dict.fromkeys(FIELDS, value)).encode()
        yield Hostile(f"every field = {value!r:.30}", path, body)
    yield Hostile("JSON 30,000 levels deep", path, DEEP_JSON)
    yield Hostile("JSON 33 levels deep", path, json.dumps(nested(33)).encode())
    yield Hostile("JSON 1e400", path, b'{"lab": 1e400, "cores": 1e400}')
    yield Hostile("JSON NaN", path, b'{"lab": NaN, "cores": Infinity}')
    yield Hostile("invalid UTF-8", path, b'{"lab": "\xff\xfe"}')
    yield Hostile("UTF-8 BOM", path, b'\xef\xbb\xbf{"lab": "pub"}')
    yield Hostile("truncated JSON", path, b'{"lab": ')
    yield Hostile("JSON null", path, b"null")
    yield Hostile("JSON list", path, b'[{"lab": "pub"}]')
    yield Hostile("JSON over the size limit", path, json.dumps({"title": "x" * MAX_BODY}).encode())
    yield Hostile("JSON as UTF-16", path, b'{"lab": "pub"}', "application/json; charset=utf-16")
    yield Hostile("JSON, unknown charset", path, b'{"lab": "pub"}', "application/json; charset=bogus")
    yield Hostile("text/plain", path, b"lab=pub", "text/plain")
    form = "application/x-www-form-urlencoded"
    yield Hostile("form with NUL", path, b"lab=%00&title=a%00&name=%C2%B2", form)
    yield Hostile(
        "form, too many fields", path, "&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), form
    )
    yield Hostile("form over the size limit", path, b"title=" + b"x" * MAX_BODY, form)
    yield Hostile("form, invalid percent-encoding", path, b"lab=%ZZ&title=%FF%FE", form)
    yield Hostile("multipart without boundary", path, b"lab=pub", "multipart/form-data")
    yield Hostile("multipart, empty boundary", path, b"lab=pub", "multipart/form-data; boundary=")
    yield Hostile("multipart, boundary too long", path, b"x", "multipart/form-data; boundary=" + "b" * 200)
    yield Hostile(
        "multipart with NUL",
        path,
        multipart([("title", "a\x00b"), ("lab", "\x00")]),
        "multipart/form-data; boundary=B",
    )
    fields = [(f"f{i}", "1") for i in range(MAX_FIELDS + 1)]
    yield Hostile("multipart, too many fields", path, multipart(fields), "multipart/form-data; boundary=B")
    yield Hostile("multipart, garbage", path, b"--B\r\n\x00\xff--", "multipart/form-data; boundary=B")


def query_shapes(path: str, parameters: list[str]) -> Iterator[Hostile]:
    names = sorted({*parameters, *COMMON_QUERY})
    for value in HOSTILE_QUERY_VALUES:
        query = "&".join(f"{name}={quote(value)}" for name in names)
        yield Hostile(f"query = {value!r:.20}", f"{path}?{query}")


def path_shapes(template: str, parameters: list[str], real: dict[str, str]) -> Iterator[Hostile]:
    for parameter in parameters:
        for value in HOSTILE_PATH_VALUES:
            filled = {**real, parameter: value}
            yield Hostile(f"{{{parameter}}} = {value:.20}", template.format(**filled))


def header_shapes(path: str) -> Iterator[Hostile]:
    for authorization in (
        "Bearer " + "é" * 50,
        "Bearer " + "a" * 20_000,
        "Bearer eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoiXFx1MDAwMCJ9.",
        "Basic Og==",
        "Bearer",
        "\x7f\x01",
    ):
        yield Hostile(
            f"Authorization {authorization:.20}", path, headers=(("HTTP_AUTHORIZATION", authorization),)
        )
    weird = (
        ("HTTP_ACCEPT", "application/xml"),
        ("HTTP_ACCEPT", "*/*;q=é"),
        ("HTTP_X_REQUEST_ID", "\r\nSet-Cookie: x=1" + "x" * 5000),
        ("HTTP_COOKIE", "sessionid=\x00; csrftoken=é; =; ;;"),
        ("HTTP_ORIGIN", "null"),
        ("CONTENT_LENGTH", "-1"),
        ("HTTP_X_FORWARDED_PROTO", "https\x00"),
    )
    for name, value in weird:
        yield Hostile(f"{name} {value:.20}", path, headers=((name, value),))


def quote(value: str) -> str:
    from urllib.parse import quote as url_quote

    return url_quote(value, safe="%")


def real_path_values(template: str, sample: Sample) -> dict[str, str]:
    collection = next(
        (c for c in ("pages", "steps", "media", "images", "instances") if f"/{c}/" in template), ""
    )
    return {
        "id": str(sample.ids.get(collection, 1)),
        "slug": "tut" if template.startswith("/api/tutorials/") else "pub",
        "lab_slug": "pub",
        "tutorial_slug": "tut",
        "name": "vm0",
        "machine_name": "vm0",
    }


def send(client: Client, method: str, shape: Hostile):
    return client.generic(
        method, shape.path, shape.body, content_type=shape.content_type, **dict(shape.headers)
    )


@pytest.mark.django_db
def test_hostile_shapes_at_every_operation_get_no_server_error(
    connections_kept_open, populated, student, instructor, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = MAX_FIELDS
    clients = {"anonymous": Client(raise_request_exception=False)}
    for name, user in (("student", student), ("staff", instructor)):
        clients[name] = Client(raise_request_exception=False, HTTP_AUTHORIZATION=bearer(user))
    # Deletes last, so the objects stay there for the other operations.
    operations = sorted(api_operations(), key=lambda operation: operation.method == "delete")
    failures: list[str] = []
    sent = 0

    for operation in operations:
        method = operation.method.upper()
        real = real_path_values(operation.path, populated)
        path = operation.path.format(**real)
        path_parameters = [parameter.name for parameter in operation.path_parameters]
        queries = list(query_shapes(path, [parameter.name for parameter in operation.query]))
        bodies = list(body_shapes(path)) if method in ("POST", "PUT", "PATCH") else []
        # Anonymous requests are refused before their body is read, except at the token endpoints;
        # a student reaches the same parsers as staff, so only staff get the path and header shapes.
        shapes_of = {
            "anonymous": [*header_shapes(path), *(bodies if path.startswith("/api/auth/") else [])],
            "student": [*queries, *bodies],
            "staff": [
                *queries,
                *bodies,
                *path_shapes(operation.path, path_parameters, real),
                *header_shapes(path),
            ],
        }
        for who, client in clients.items():
            for shape in shapes_of[who]:
                response = send(client, method, shape)
                sent += 1
                where = f"{who}: {method} {operation.path} [{shape.label}]"
                if is_server_error(response):
                    failures.append(f"{where} -> {response.status_code}")
                elif response.status_code in (400, 413) and response["Content-Type"] != "application/json":
                    failures.append(f"{where} -> {response.status_code} as {response['Content-Type']}")

    assert failures == []
    assert sent > 5000


# --- The site's other URLs ------------------------------------------------------------------------

SITE_PATHS = [
    "/", "/instances/{instance}/", "/embed/instances/{instance}/", "/embed/labs/pub/",
    "/media/tutorials/x.png", "/lti/login/", "/lti/launch/", "/lti/jwks/", "/lti/deep-linking/token/",
    "/lti/activities/1/progress/",
    "/lti/configuration/", "/accounts/login/", "/admin/", "/admin/labs/labinstance/", "/admin/labs/lab/",
    "/admin/labs/lab/{lab}/change/", "/admin/tutorials/tutorialpage/preview/",
    "/admin/tutorials/tutorial/", "/admin/lti/platform/", "/static/admin/css/base.css", "/healthz",
]  # fmt: skip
SITE_QUERY_VALUES = ["\x00", "²", "9" * 30, "x" * 3000, "%"]
SITE_PATH_VALUES = ["%00", "%C2%B2", "9" * 30, "x" * 300, "%ED%A0%80"]
ADMIN_QUERY = ["q", "o", "p", "e", "status__exact", "owner__id__exact", "lab__id__exact", "_to_field", "all"]


def site_shapes(template: str, sample: Sample, lab_id: int) -> Iterator[tuple[str, Hostile]]:
    path = template.format(instance=sample.ids["instances"], lab=lab_id)
    for value in SITE_QUERY_VALUES:
        query = "&".join(f"{name}={quote(value)}" for name in [*COMMON_QUERY, *ADMIN_QUERY, "iss", "state"])
        yield "GET", Hostile(f"query = {value!r:.20}", f"{path}?{query}")
    for value in SITE_PATH_VALUES:
        yield "GET", Hostile(f"path + {value:.20}", path.rstrip("/") + "/" + value + "/")
    form = "application/x-www-form-urlencoded"
    posts = [
        Hostile("form with NUL", path, b"state=%00&id_token=a.b.c&iss=%00&login_hint=1&source=%00", form),
        Hostile(
            "form, too many fields", path, "&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), form
        ),
        Hostile("form over the size limit", path, b"source=" + b"x" * MAX_BODY, form),
        Hostile("deep Markdown", path, b"source=" + b"-+" * 3000 + b"x", form),
        Hostile("multipart without boundary", path, b"x", "multipart/form-data"),
        Hostile(
            "multipart with NUL", path, multipart([("state", "\x00")]), "multipart/form-data; boundary=B"
        ),
        Hostile("JSON 30,000 levels deep", path, DEEP_JSON),
    ]
    for shape in posts:
        yield "POST", shape


@pytest.mark.django_db
def test_hostile_shapes_at_the_sites_other_urls_get_no_server_error(populated, student, instructor, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = MAX_FIELDS
    lab_id = Lab.objects.get(slug="pub").pk
    clients = {"anonymous": Client(raise_request_exception=False)}
    for name, user in (("student", student), ("staff", instructor)):
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    failures: list[str] = []

    for template in SITE_PATHS:
        for who, client in clients.items():
            for method, shape in site_shapes(template, populated, lab_id):
                response = send(client, method, shape)
                if response.status_code >= 500:
                    failures.append(f"{who}: {method} {template} [{shape.label}] -> {response.status_code}")

    assert failures == []
