"""Which uploads are accepted as tutorial media, and the Markdown that refers to them."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from tutorials.media import markdown_snippet, validate_tutorial_media

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
PDF = b"%PDF-1.7\n" + b"\x00" * 32
ZIP = b"PK\x03\x04" + b"\x00" * 32


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("topology.png", PNG),
        ("photo.JPG", JPEG),
        ("photo.jpeg", JPEG),
        ("anim.gif", GIF),
        ("shot.webp", WEBP),
        ("slides.pdf", PDF),
        ("configs.zip", ZIP),
        ("notes.txt", "Grüße, {{ vm.web.ip }}\n".encode()),
    ],
)
def test_allowed_types_with_matching_content_are_accepted(name, content):
    validate_tutorial_media(upload(name, content))


@pytest.mark.parametrize(
    "name", ["drawing.svg", "page.html", "page.htm", "script.js", "tool.exe", "noextension", "x.xhtml"]
)
def test_types_a_browser_could_run_or_that_are_not_listed_are_refused(name):
    with pytest.raises(ValidationError) as raised:
        validate_tutorial_media(upload(name, b"<svg onload=alert(1)>"))
    message = " ".join(raised.value.messages)
    assert "Allowed: .gif, .jpeg, .jpg, .pdf, .png, .txt, .webp, .zip" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("fake.png", b"<html><script>alert(1)</script></html>"),
        ("fake.jpg", PNG),
        ("fake.webp", b"RIFF\x24\x00\x00\x00WAVEfmt "),
        ("fake.pdf", b"<html>"),
        ("binary.txt", b"\x00\x01\x02binary"),
        ("latin1.txt", "Grüße".encode("latin-1")),
    ],
)
def test_content_must_match_the_extension(name, content):
    with pytest.raises(ValidationError) as raised:
        validate_tutorial_media(upload(name, content))
    assert "not a valid" in " ".join(raised.value.messages)


@override_settings(TUTORIAL_MEDIA_MAX_BYTES=100)
def test_files_over_the_size_limit_are_refused_with_both_sizes():
    with pytest.raises(ValidationError) as raised:
        validate_tutorial_media(upload("big.png", PNG + b"\x00" * 200))
    assert "at most 100\xa0bytes" in " ".join(raised.value.messages)


def test_markdown_snippet_embeds_images_and_links_files():
    assert markdown_snippet("Topology", "/media/t.png", "t.png") == "![Topology](/media/t.png)"
    assert markdown_snippet("Slides [v2]", "/media/s.pdf", "s.pdf") == "[Slides (v2)](/media/s.pdf)"


def test_a_long_text_file_cut_inside_a_character_by_the_probe_is_accepted():
    content = b"a" * (64 * 1024 - 1) + "é and more".encode()
    validate_tutorial_media(upload("long.txt", content))
