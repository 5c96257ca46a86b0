"""Hostile request bodies and parameters get a 400 (or 413) in the API's JSON error format, never a
500, and change nothing: deep JSON, NUL characters, lone surrogates, digits that are not ASCII,
numbers no id column holds, oversized bodies, too many fields, multipart without a boundary."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from labs.models import Lab, LabInstance, LabMachine, VMImage
from tests.api.conftest import bearer
from tutorials.models import Tutorial

pytestmark = pytest.mark.django_db

# 100,000 levels, about 200 KB: what the issue sent to every JSON endpoint.
DEEP_JSON = "[" * 100_000 + "]" * 100_000
TOO_BIG_ID = "9" * 30


@pytest.fixture
def lab(db) -> Lab:
    image = VMImage.objects.create(name="Cirros", container_disk_image="a/cirros:1", default_username="c")
    lab = Lab.objects.create(name="Pub", slug="pub", namespace_prefix="pub", published=True)
    LabMachine.objects.create(lab=lab, name="vm0", image=image)
    return lab


@pytest.fixture
def tutorial(lab) -> Tutorial:
    tutorial = Tutorial.objects.create(title="Tut", slug="tut", published=True)
    tutorial.labs.add(lab)
    return tutorial


def http(user=None) -> Client:
    """Django's client, answering 500 like a server would instead of raising the view's error."""
    client = Client(raise_request_exception=False)
    if user is not None:
        client.defaults["HTTP_AUTHORIZATION"] = bearer(user)
    return client


def post_json(client: Client, path: str, body: str):
    return client.post(path, body, content_type="application/json")


def assert_api_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    text = json.dumps(body, ensure_ascii=False)
    for word in words:
        assert word in text, text
    return body


@pytest.mark.parametrize("path", ["/api/auth/token/", "/api/auth/token/refresh/"])
def test_deeply_nested_json_to_the_anonymous_token_endpoints_is_a_400(path):
    response = post_json(http(), path, DEEP_JSON)

    assert_api_error(response, 400, "nested more than 32 levels")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/instances/"),
        ("post", "/api/labs/"),
        ("patch", "/api/labs/pub/"),
        ("post", "/api/labs/pub/machines/"),
        ("post", "/api/tutorials/"),
        ("put", "/api/labs/pub/machines/vm0/"),
    ],
)
def test_deeply_nested_json_is_a_400_everywhere(instructor, lab, method, path):
    response = getattr(http(instructor), method)(path, DEEP_JSON, content_type="application/json")

    assert_api_error(response, 400, "nested more than 32 levels")


def test_json_a_little_deeper_than_the_limit_is_refused_too(student, lab):
    body = {"lab": "pub"}
    for _ in range(40):
        body = {"x": body}

    response = post_json(http(student), "/api/instances/", json.dumps(body))

    assert_api_error(response, 400, "nested more than 32 levels")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"lab": "\\u0000"}', ["lab", "NUL character"]),
        ('{"lab": "pub\\u0000"}', ["lab", "NUL character"]),
        ('{"lab": "\\ud800"}', ["lab", "unpaired surrogate"]),
        ('{"lab\\u0000": "pub"}', ["field name", "NUL character"]),
    ],
)
def test_nul_characters_and_lone_surrogates_in_json_are_refused_by_name(student, lab, body, words):
    response = post_json(http(student), "/api/instances/", body)

    assert_api_error(response, 400, *words)
    assert not LabInstance.objects.exists()


@pytest.mark.parametrize("value", ["²", "٣", "1²", " 1", "1e3", TOO_BIG_ID, 10**30, True, -1, 0, ["pub"], {}])
def test_a_lab_reference_that_is_neither_an_id_nor_a_slug_is_no_lab(student, lab, value):
    response = post_json(http(student), "/api/instances/", json.dumps({"lab": value}))

    body = assert_api_error(response, 400)
    assert body["lab"][0].startswith("There is no lab")
    assert not LabInstance.objects.exists()


def test_a_surrogate_in_a_tutorial_title_is_refused_and_nothing_is_saved(instructor):
    body = '{"title": "Intro \\udfff", "slug": "intro"}'

    response = post_json(http(instructor), "/api/tutorials/", body)

    assert_api_error(response, 400, "title", "unpaired surrogate")
    assert not Tutorial.objects.exists()


@pytest.mark.parametrize("value", ["²", "٣", "-1", "1.0", TOO_BIG_ID])
@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/tutorials/tut/", "instance"),
        ("/api/tutorials/tut/progress/", "user"),
        ("/api/instances/", "user"),
    ],
)
def test_id_query_parameters_take_ascii_digits_in_range_only(instructor, tutorial, path, parameter, value):
    response = http(instructor).get(path, {parameter: value})

    assert_api_error(response, 400, parameter, "Enter an id")


def test_an_id_query_parameter_in_range_still_works(instructor, student, tutorial):
    response = http(instructor).get("/api/tutorials/tut/progress/", {"user": str(student.pk)})

    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"


def test_nul_in_an_api_query_is_refused_in_the_api_format(instructor):
    response = http(instructor).get("/api/instances/", {"lab": "\x00"})

    assert_api_error(response, 400, "query parameter 'lab'", "NUL character")


def test_nul_in_an_api_path_is_refused_in_the_api_format(instructor, lab):
    response = http(instructor).get("/api/labs/pub%00/")

    assert_api_error(response, 400, "address", "NUL character")


def test_a_body_over_the_upload_limit_names_the_limit(student, lab, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = post_json(http(student), "/api/instances/", json.dumps({"lab": "x" * 2000}))

    body = assert_api_error(response, 413, "larger than the limit", "1000 bytes")
    assert body["code"] == "request_too_large"


def test_a_form_over_the_upload_limit_names_the_limit(student, lab, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = http(student).post(
        "/api/instances/", "lab=" + "x" * 2000, content_type="application/x-www-form-urlencoded"
    )

    assert_api_error(response, 413, "1000 bytes")


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=B"]
)
def test_too_many_fields_names_the_limit(student, lab, settings, content_type):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    if content_type.startswith("multipart"):
        parts = [f'--B\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n1\r\n' for i in range(20)]
        payload = "".join(parts) + "--B--\r\n"
    else:
        payload = "&".join(f"f{i}=1" for i in range(20))

    response = http(student).post("/api/instances/", payload, content_type=content_type)

    body = assert_api_error(response, 400, "more than 10 fields")
    assert body["code"] == "too_many_fields"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary="])
def test_multipart_without_a_boundary_is_a_json_400(instructor, media_root, content_type):
    response = http(instructor).post("/api/media/", b"title=x", content_type=content_type)

    assert_api_error(response, 400, "boundary")


def test_nul_in_a_multipart_field_is_refused(instructor, media_root):
    payload = '--B\r\nContent-Disposition: form-data; name="title"\r\n\r\nA\x00B\r\n--B--\r\n'

    response = http(instructor).post("/api/media/", payload, content_type="multipart/form-data; boundary=B")

    assert_api_error(response, 400, "title", "NUL character")
