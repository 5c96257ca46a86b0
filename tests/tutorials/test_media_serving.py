"""Uploaded tutorial media is served by the app, in production too, and only as what it is."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tutorials.models import TutorialMedia

pytestmark = pytest.mark.django_db

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.DEBUG = False
    return tmp_path


def test_an_uploaded_image_is_served_inline_and_never_sniffed(client, media_root):
    media = TutorialMedia.objects.create(title="dot", file=SimpleUploadedFile("dot.png", PNG))
    response = client.get(media.file.url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "attachment" not in response.get("Content-Disposition", "")


def test_other_files_are_downloads(client, media_root):
    media = TutorialMedia.objects.create(title="notes", file=SimpleUploadedFile("notes.txt", b"hello"))
    response = client.get(media.file.url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize(
    "path", ["/media/../../etc/passwd", "/media/%2e%2e/secret", "/media/missing.png", "/media/"]
)
def test_paths_outside_media_or_missing_are_404(client, media_root, path):
    (media_root.parent / "secret").write_text("no")
    assert client.get(path).status_code == 404


def test_uploads_cannot_be_posted_to(client, media_root):
    assert client.post("/media/x.png").status_code == 405
