"""Tutorial media over the API: instructors upload images and files, paste their Markdown, rename
and delete them; refused uploads leave nothing on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
NOTES = b"Ping {{ vm.web.ip }} from the client.\n"


@pytest.fixture
def staff(client_for, instructor, media_root):
    return client_for(instructor)


def upload(client, name: str, content: bytes, title: str = "Topology"):
    data = {"title": title, "file": SimpleUploadedFile(name, content)}
    return client.post("/api/media/", data, format="multipart")


def stored_files(media_root: Path) -> list[Path]:
    return [path for path in media_root.rglob("*") if path.is_file()]


def served_bytes(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_instructor_uploads_an_image_and_pastes_its_markdown(staff, instructor, media_root):
    response = upload(staff, "topology.png", PNG)

    assert response.status_code == 201, response.content
    body = response.json()
    media = TutorialMedia.objects.get()
    assert body["id"] == media.pk
    assert body["title"] == "Topology"
    assert re.fullmatch(r"http://testserver/media/tutorials/\d{4}/\d{2}/topology\.png", body["url"])
    assert body["kind"] == "image"
    assert body["size"] == len(PNG)
    assert body["markdown"] == f"![Topology]({media.file.url})"
    assert body["uploaded_by"] == {"id": instructor.pk, "username": "ines"}
    assert body["uploaded_at"]
    assert "file" not in body
    assert served_bytes(staff, body["url"]) == PNG
    assert stored_files(media_root) == [Path(media.file.path)]


def test_other_files_are_links_to_download(staff):
    body = upload(staff, "notes.txt", NOTES, title="Notes [v2]").json()

    assert body["kind"] == "file"
    assert body["size"] == len(NOTES)
    assert body["markdown"] == f"[Notes (v2)]({TutorialMedia.objects.get().file.url})"
    response = staff.get(body["url"])
    assert response["Content-Disposition"].startswith("attachment")
    assert b"".join(response.streaming_content) == NOTES


def test_list_is_newest_first_and_paginated(staff):
    for title in ("First", "Second", "Third"):
        assert upload(staff, "notes.txt", NOTES, title=title).status_code == 201

    body = staff.get("/api/media/?page_size=2").json()

    assert body["count"] == 3
    assert [media["title"] for media in body["results"]] == ["Third", "Second"]
    assert staff.get(body["next"]).json()["results"][0]["title"] == "First"
    # Three uploads of one name are three files; none overwrote another.
    assert len({media.file.name for media in TutorialMedia.objects.all()}) == 3


def test_retrieve_and_rename(staff, media_root):
    media_id = upload(staff, "topology.png", PNG).json()["id"]

    response = staff.patch(f"/api/media/{media_id}/", {"title": "Network map"}, format="json")

    assert response.status_code == 200
    assert response.json()["markdown"].startswith("![Network map](/media/tutorials/")
    assert staff.get(f"/api/media/{media_id}/").json()["title"] == "Network map"
    assert len(stored_files(media_root)) == 1


@pytest.mark.parametrize("format_", ["multipart", "json"])
def test_the_file_cannot_be_replaced(staff, media_root, format_):
    body = upload(staff, "topology.png", PNG).json()
    replacement = SimpleUploadedFile("other.png", PNG + b"new") if format_ == "multipart" else "other.png"

    response = staff.patch(
        f"/api/media/{body['id']}/", {"title": "Renamed", "file": replacement}, format=format_
    )

    assert response.status_code == 400
    assert "cannot be replaced" in response.json()["file"][0]
    assert TutorialMedia.objects.get().title == "Topology"
    assert served_bytes(staff, body["url"]) == PNG
    assert len(stored_files(media_root)) == 1


def test_put_is_not_offered(staff):
    media_id = upload(staff, "topology.png", PNG).json()["id"]

    response = staff.put(f"/api/media/{media_id}/", {"title": "X"}, format="json")

    assert response.status_code == 405


def test_delete_removes_the_stored_file(staff, media_root, django_capture_on_commit_callbacks):
    body = upload(staff, "topology.png", PNG).json()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.delete(f"/api/media/{body['id']}/")

    assert response.status_code == 204
    assert not TutorialMedia.objects.exists()
    assert stored_files(media_root) == []
    assert staff.get(body["url"]).status_code == 404
    assert staff.get(f"/api/media/{body['id']}/").status_code == 404


def test_a_missing_stored_file_shows_as_size_null(staff, media_root):
    media_id = upload(staff, "topology.png", PNG).json()["id"]
    Path(TutorialMedia.objects.get().file.path).unlink()

    response = staff.get(f"/api/media/{media_id}/")

    assert response.status_code == 200
    assert response.json()["size"] is None
    # Renaming does not re-check a file that is already stored.
    assert staff.patch(f"/api/media/{media_id}/", {"title": "Y"}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"title": "X", "file": ("drawing.svg", b"<svg onload=alert(1)>")}, "file", "cannot be uploaded"),
        ({"title": "X", "file": ("page.html", b"<html></html>")}, "file", "cannot be uploaded"),
        ({"title": "X", "file": ("fake.png", b"<html><script></script></html>")}, "file", "not a valid .png"),
        ({"title": "X", "file": ("big.png", PNG + b"\x00" * 200)}, "file", "may be at most 100\xa0bytes"),
        ({"title": "X", "file": ("empty.txt", b"")}, "file", "The submitted file is empty."),
        ({"title": "X"}, "file", "No file was submitted."),
        ({"title": "", "file": ("dot.png", PNG)}, "title", "may not be blank"),
        ({"file": ("dot.png", PNG)}, "title", "This field is required."),
        ({"title": "x" * 201, "file": ("dot.png", PNG)}, "title", "no more than 200 characters"),
    ],
    ids=[
        "svg",
        "html",
        "content",
        "too-large",
        "empty-file",
        "no-file",
        "empty-title",
        "no-title",
        "long-title",
    ],
)
def test_refused_uploads_say_why_and_store_nothing(staff, media_root, settings, data, field, message):
    settings.TUTORIAL_MEDIA_MAX_BYTES = 100
    if "file" in data:
        data = {**data, "file": SimpleUploadedFile(*data["file"])}

    response = staff.post("/api/media/", data, format="multipart")

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert not TutorialMedia.objects.exists()
    assert stored_files(media_root) == []


def test_a_file_sent_as_json_is_refused(staff, media_root):
    response = staff.post("/api/media/", {"title": "X", "file": "dot.png"}, format="json")

    assert response.status_code == 400
    assert "not a file" in response.json()["file"][0]
    assert stored_files(media_root) == []


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("student", 403)])
def test_students_and_anonymous_can_neither_see_nor_change_media(
    staff, media_root, client_for, student, who, status
):
    body = upload(staff, "topology.png", PNG).json()
    other = client_for(student if who == "student" else None)
    detail = f"/api/media/{body['id']}/"

    assert other.get("/api/media/").status_code == status
    assert other.get(detail).status_code == status
    assert upload(other, "notes.txt", NOTES).status_code == status
    assert other.patch(detail, {"title": "Mine"}, format="json").status_code == status
    assert other.delete(detail).status_code == status
    assert list(TutorialMedia.objects.values_list("title", flat=True)) == ["Topology"]
    assert len(stored_files(media_root)) == 1
    # The file itself stays public, like every URL pasted into a published page.
    assert served_bytes(other, body["url"]) == PNG


def test_the_schema_describes_the_upload_as_multipart_form_data():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    content = schema["paths"]["/api/media/"]["post"]["requestBody"]["content"]
    assert list(content) == ["multipart/form-data"]
    upload_schema = schema["components"]["schemas"][
        content["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    ]
    assert upload_schema["properties"]["file"]["format"] == "binary"
    assert set(upload_schema["required"]) == {"title", "file"}
    assert set(schema["paths"]["/api/media/{id}/"]) == {"get", "patch", "delete"}


def test_media_a_page_refers_to_is_not_deleted_without_force(
    staff, media_root, django_capture_on_commit_callbacks
):
    body = upload(staff, "topology.png", PNG).json()
    tutorial = Tutorial.objects.create(title="Networking", slug="networking")
    page = TutorialPage.objects.create(tutorial=tutorial, title="Topology", body_markdown=body["markdown"])
    Step.objects.create(page=page, text_markdown=f"Compare with [the picture]({body['url']}).")

    response = staff.delete(f"/api/media/{body['id']}/")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        'Still referred to by "Networking", a step on page "Topology"; "Networking", page "Topology". '
        "Edit them first, or delete with force=true."
    )
    assert TutorialMedia.objects.exists() and len(stored_files(media_root)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.delete(f"/api/media/{body['id']}/?force=true")
    assert response.status_code == 204
    assert not TutorialMedia.objects.exists() and stored_files(media_root) == []
