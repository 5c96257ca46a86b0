"""What every request's input must be before any view, query or renderer sees it.

One place per kind of input, so a hostile value is refused the same way wherever it arrives:

- text (URL paths, query strings, form fields, JSON strings and keys): no NUL character (PostgreSQL
  cannot store it, file paths cannot hold it) and no unpaired surrogate (not Unicode: no database
  driver can encode it). `InputMiddleware` checks URLs and HTML form posts, the API's parsers
  (`laborchestrator.api.parsers`) check request bodies;
- ids: ASCII digits only, in the range of a database id (`parse_id`), never `str.isdigit()` + `int()`,
  which accept "²" (then fail) and numbers no database column holds;
- structure: JSON bodies nested at most `MAX_JSON_DEPTH` levels (`data_problem`).

A refusal is a 400 saying what is wrong, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.deprecation import MiddlewareMixin

# The largest id a BigAutoField (PostgreSQL bigint, SQLite INTEGER) can hold.
MAX_ID = 2**63 - 1
# Our API's bodies are at most three levels deep; 32 leaves room and stays far from Python's stack.
MAX_JSON_DEPTH = 32
API_PREFIX = "/api/"

_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored or used as text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains an unpaired surrogate (not valid Unicode)"
    return None


def parse_id(value: Any) -> int | None:
    """The database id `value` stands for (an int, or a string of ASCII digits), or None.

    Booleans, "²", "٣", " 7", "1e3" and numbers beyond MAX_ID are not ids.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_ID else None


class IdField(forms.Field):
    """A form (and django-filter) field for a database id, by `parse_id`'s rules."""

    default_error_messages = {"invalid": f"Enter an id: a whole number from 1 to {MAX_ID}."}

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        number = parse_id(value)
        if number is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return number


def data_problem(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why parsed JSON (dicts, lists, strings, numbers) cannot be accepted, or None.

    Walks the data with an explicit stack: the check itself must not recurse on hostile depth.
    """
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                return f"The data is nested more than {max_depth} levels deep."
            items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and (problem := text_problem(key)):
                    return f"A field name {problem}."
                stack.append((item, depth + 1, f"{where}.{key}" if where else str(key)))
        elif isinstance(value, str) and (problem := text_problem(value)):
            return f"The value of {where} {problem}." if where else f"The text {problem}."
    return None


def _url_problem(request: HttpRequest) -> str | None:
    if problem := text_problem(request.path_info):
        return f"The address {problem}."
    for key, values in request.GET.lists():
        for text in (key, *values):
            if problem := text_problem(text):
                return f"The query parameter {key!r} {problem}."
    return None


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def form_problem(fields: Any, files: Any = None) -> str | None:
    """Why form fields (a QueryDict) or the names of uploaded files cannot be accepted, or None."""
    for key, values in fields.lists():
        for text in (key, *values):
            if isinstance(text, str) and (problem := text_problem(text)):
                return f"The form field {key!r} {problem}."
    for key, uploads in files.lists() if files is not None else ():
        for upload in uploads:
            if problem := text_problem(key) or text_problem(upload.name or ""):
                return f"The file field {key!r} {problem}."
    return None


def _form_post_problem(request: HttpRequest) -> str | None:
    """Only for form posts outside the API: the API's parsers check its bodies themselves, and
    answer in its format. Django parses the body here as any view would, with its size limits."""
    if request.method != "POST" or request.path_info.startswith(API_PREFIX):
        return None
    if request.content_type not in FORM_CONTENT_TYPES:
        return None
    return form_problem(request.POST, request.FILES)


def bad_input_response(request: HttpRequest, message: str) -> HttpResponse:
    """400 in the format the client reads: the API's JSON errors, or a plain sentence."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": message, "code": "invalid_input"}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class InputMiddleware(MiddlewareMixin):
    """Refuses URLs and form posts carrying text no view can use, before any view, static file
    lookup or admin filter turns it into a database or file system error."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        problem = _url_problem(request) or _form_post_problem(request)
        return bad_input_response(request, problem) if problem else None
