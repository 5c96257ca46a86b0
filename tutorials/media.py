"""What may be uploaded as tutorial media, and how Markdown refers to it (deleting an upload:
tutorials.media_deletion).

Uploads are served from our own origin, so anything a browser could run there is refused:
no SVG (it can carry scripts), no HTML. Each allowed type is recognised by its extension AND its
first bytes, so a renamed page of HTML is not accepted as an image.
"""

from __future__ import annotations

import codecs
from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.template.defaultfilters import filesizeformat

# Extension -> possible leading bytes. An empty tuple means: text, checked separately.
IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),  # followed by 4 size bytes and "WEBP", checked below
}
FILE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "txt": (),
}
ALLOWED_EXTENSIONS = sorted({*IMAGE_SIGNATURES, *FILE_SIGNATURES})
_HEAD_BYTES = 16
_TEXT_PROBE_BYTES = 64 * 1024


def extension_of(name: str) -> str:
    return PurePosixPath(name).suffix.lower().lstrip(".")


def is_image_name(name: str) -> bool:
    return extension_of(name) in IMAGE_SIGNATURES


def validate_tutorial_media(file: File) -> None:
    """Size, extension and content checks; the messages say what is accepted."""
    extension = extension_of(file.name or "")
    if extension not in IMAGE_SIGNATURES and extension not in FILE_SIGNATURES:
        raise ValidationError(
            "Files of type %(extension)s cannot be uploaded. Allowed: %(allowed)s. "
            "(SVG and HTML are refused because browsers run scripts inside them.)",
            code="media_type",
            params={"extension": f".{extension}" if extension else "(none)", "allowed": _allowed_list()},
        )
    _validate_size(file)
    _validate_content(file, extension)


def _allowed_list() -> str:
    return ", ".join(f".{extension}" for extension in ALLOWED_EXTENSIONS)


def _validate_size(file: File) -> None:
    limit = settings.TUTORIAL_MEDIA_MAX_BYTES
    if file.size > limit:
        raise ValidationError(
            "This file is %(size)s; uploads may be at most %(limit)s.",
            code="media_too_large",
            params={"size": filesizeformat(file.size), "limit": filesizeformat(limit)},
        )


def _validate_content(file: File, extension: str) -> None:
    try:
        file.seek(0)
        probe = file.read(_TEXT_PROBE_BYTES if extension == "txt" else _HEAD_BYTES)
        file.seek(0)
    except OSError as error:
        raise ValidationError(
            "The stored file cannot be read; upload it again.", code="media_missing"
        ) from error
    if not _content_matches(extension, probe):
        raise ValidationError(
            "The content of this file is not a valid .%(extension)s file.",
            code="media_content",
            params={"extension": extension},
        )


def _content_matches(extension: str, head: bytes) -> bool:
    if extension == "txt":
        return _looks_like_text(head)
    signatures = IMAGE_SIGNATURES.get(extension) or FILE_SIGNATURES[extension]
    if not head.startswith(signatures):
        return False
    return extension != "webp" or head[8:12] == b"WEBP"


def _looks_like_text(probe: bytes) -> bool:
    if b"\x00" in probe:
        return False
    # A full probe may end in the middle of a multi-byte character; the rest of the file follows.
    whole_file = len(probe) < _TEXT_PROBE_BYTES
    try:
        codecs.getincrementaldecoder("utf-8")().decode(probe, final=whole_file)
    except UnicodeDecodeError:
        return False
    return True


def markdown_snippet(title: str, url: str, name: str) -> str:
    """What an author pastes into a page: an image, or a link to download the file."""
    label = title.replace("[", "(").replace("]", ")")
    return f"![{label}]({url})" if is_image_name(name) else f"[{label}]({url})"
