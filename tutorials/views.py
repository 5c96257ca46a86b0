"""Serving uploaded tutorial media.

Uploads are few and small (validated types, size-capped), so the app serves them itself in
production too; a CDN or the ingress can cache them. Headers make sure a file can only ever be
what its validated type says: never sniffed as HTML, files other than images downloaded.
"""

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from tutorials.media import is_image_name

# Uploaded names are not secret, but a week of caching is plenty for files that rarely change.
MEDIA_CACHE_SECONDS = 7 * 24 * 3600


@require_safe
def media_file(request: HttpRequest, path: str) -> FileResponse:
    try:
        # The storage uploads were saved through: it refuses a path escaping its folder.
        handle = default_storage.open(path, "rb")
    except (SuspiciousFileOperation, FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise Http404("No such file.") from error
    response = FileResponse(handle, as_attachment=not is_image_name(path))
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = f"public, max-age={MEDIA_CACHE_SECONDS}"
    return response
