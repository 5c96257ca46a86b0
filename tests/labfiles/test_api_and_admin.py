"""The export and the import through the API and the admin: staff only, errors as 400 with the
file and line, dry runs that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from labfiles.bundle import read_folder, read_zip, to_zip
from labfiles.importing import import_lab
from labs.models import Lab

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "labfiles" / "demo" / "explore-your-lab-network"


@pytest.fixture
def demo_zip() -> bytes:
    return to_zip(read_folder(DEMO), "explore-your-lab-network")


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("lab.zip", data, "application/zip")


def test_the_api_imports_with_a_dry_run_first_then_exports(instructor, demo_zip):
    dry = api(instructor).post(
        "/api/lab-files/", {"file": upload(demo_zip), "dry_run": "true"}, format="multipart"
    )
    assert dry.status_code == 200, dry.content
    assert dry.json()["lab"] is None and "create lab explore-your-lab-network" in dry.json()["changes"]
    assert not Lab.objects.exists()

    done = api(instructor).post("/api/lab-files/", {"file": upload(demo_zip)}, format="multipart")
    assert done.json()["lab"] == "explore-your-lab-network"
    again = api(instructor).post("/api/lab-files/", {"file": upload(demo_zip)}, format="multipart")
    assert again.json()["changes"] == []

    exported = api(instructor).get("/api/lab-files/explore-your-lab-network/")
    assert exported.status_code == 200 and exported["Content-Type"] == "application/zip"
    assert read_zip(exported.content) == read_folder(DEMO)


def test_bad_files_are_a_400_naming_file_and_line(instructor):
    bundle = read_folder(DEMO)
    bundle["lab.yaml"] += b"colour: red\n"
    response = api(instructor).post(
        "/api/lab-files/", {"file": upload(to_zip(bundle, "x"))}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["file"] == [
        "lab.yaml, line 10: unknown key 'colour' in the lab (known: name, slug, "
        "description, published, instances_per_user, lifetime_minutes, "
        "idle_timeout_minutes, namespace_prefix, ready_instances)"
    ]
    not_zip = api(instructor).post("/api/lab-files/", {"file": upload(b"nope")}, format="multipart")
    assert not_zip.status_code == 400 and "not a zip" in not_zip.json()["file"][0]


def test_students_can_neither_export_nor_import(student, demo_zip):
    import_lab(read_folder(DEMO))
    assert api(student).get("/api/lab-files/explore-your-lab-network/").status_code == 403
    assert (
        api(student).post("/api/lab-files/", {"file": upload(demo_zip)}, format="multipart").status_code
        == 403
    )
    client = Client()
    client.force_login(student)
    assert (
        client.get("/admin/lab-files/explore-your-lab-network.zip").status_code == 302
    )  # to the admin sign-in
    assert client.post("/admin/lab-files/import/", {"file": upload(demo_zip)}).status_code == 302
    assert APIClient().get("/api/lab-files/explore-your-lab-network/").status_code in (401, 403)


def test_the_admin_exports_and_imports(instructor, demo_zip, django_user_model):
    admin_user = django_user_model.objects.create_superuser(username="root", password="pw-root-1")
    client = Client()
    client.force_login(admin_user)
    page = client.post("/admin/lab-files/import/", {"file": upload(demo_zip), "dry_run": "on"})
    assert page.status_code == 200 and "create lab explore-your-lab-network" in page.content.decode()
    assert not Lab.objects.exists()
    client.post("/admin/lab-files/import/", {"file": upload(demo_zip)})
    lab = Lab.objects.get()
    change_page = client.get(f"/admin/labs/lab/{lab.pk}/change/").content.decode()
    assert "/admin/lab-files/explore-your-lab-network.zip" in change_page
    assert "/admin/lab-files/import/" in client.get("/admin/labs/lab/").content.decode()
    exported = client.get("/admin/lab-files/explore-your-lab-network.zip")
    assert read_zip(exported.content) == read_folder(DEMO)

    bad = client.post("/admin/lab-files/import/", {"file": upload(b"PK nope")})
    assert bad.status_code == 400 and "Nothing was imported" in bad.content.decode()
