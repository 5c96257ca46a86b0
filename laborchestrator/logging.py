"""Structured logs: a JSON formatter, request ids, and redaction of secrets.

`LOG_FORMAT=json` makes every log record one JSON object on one line of stdout, which is what
cluster log collectors (Loki, Fluent Bit, Elastic) parse without a per-application pattern.
The request id travels in a context variable, not a thread-local: under ASGI a request hops
between the event loop and worker threads, and asgiref copies context variables along with it.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
# ingress-nginx sends 32 hex digits; other proxies send UUIDs. Anything else (long, or with characters
# that could forge log lines or headers) is replaced by an id of our own.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
NO_REQUEST = "-"

request_id_var: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)

REDACTED = "[REDACTED]"
_SECRET_WORDS = r"password|passwd|passphrase|secret|token|ticket|api[_-]?key|sessionid|csrftoken|credentials?"
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # Credentials in URLs: postgres://user:pw@host, redis://:pw@host.
    (re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)", re.I), rf"\g<head>{REDACTED}"),
    # Authorization/Cookie headers, whether logged as "Authorization: Bearer x" or {'HTTP_COOKIE': 'x'}.
    (
        re.compile(
            r"(?P<head>(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\"'\n]+",
            re.I,
        ),
        rf"\g<head>{REDACTED}",
    ),
    (
        re.compile(r"(?P<head>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I),
        rf"\g<head>{REDACTED}",
    ),
    # key=value, key: value, "key": "value" and ?key=value&... for any key naming a secret.
    (
        re.compile(
            rf"(?P<head>[\w-]*(?:{_SECRET_WORDS})[\w-]*[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;}})\]]+",
            re.I,
        ),
        rf"\g<head>{REDACTED}",
    ),
    # One-time sign-in links of a class import (classes/): the token is the last part of the path.
    (re.compile(r"(?P<head>/classes/sign-in/)[A-Za-z0-9_-]+"), rf"\g<head>{REDACTED}"),
    # JSON Web Tokens wherever they appear (SimpleJWT access and refresh tokens).
    (re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+"), REDACTED),
]
_SECRET_KEY = re.compile(rf"(?:{_SECRET_WORDS})|authorization|cookie", re.I)


def redact(text: str) -> str:
    """`text` with every value that looks like a secret replaced by [REDACTED]."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def clean_request_id(value: str | None) -> str:
    """The proxy's request id when it is short and safe, else a new random one."""
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIDMiddleware:
    """Takes X-Request-ID from the ingress (or makes one), exposes it to logs and returns it.

    Async-capable, so under ASGI it runs on the event loop without a thread hop; the context
    variable it sets is inherited by the sync view's worker thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id = self._begin(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request_id = self._begin(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    @staticmethod
    def _begin(request: HttpRequest) -> str:
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Not reset on the way out: Django logs 4xx/5xx responses ("django.request") after the
        # middleware chain has returned, and those lines need the id most. Under ASGI each request
        # is its own task with its own context; a sync worker thread's next request sets a new id.
        request_id_var.set(request_id)
        return request_id


class RequestIDFilter(logging.Filter):
    """Adds `request_id` to every record ("-" outside a request, e.g. in management commands)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


class RedactSecretsFilter(logging.Filter):
    """Removes secrets from the message, the traceback and `extra` fields before any handler sees them.

    Runs on the handler, because filters on a logger do not see records from its child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed call (arguments not matching the format) must not raise at the call site.
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for key, value in _extra_fields(record).items():
            if _SECRET_KEY.search(key):
                setattr(record, key, REDACTED)
            elif isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def _json_value(value: Any) -> Any:
    if isinstance(value, HttpRequest):
        # Django's request loggers attach the request itself; the path without its query string is
        # what an operator needs, and the query string is where tickets and tokens would be.
        return {"method": value.method, "path": value.path}
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    return redact(str(value))


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        for key, value in _extra_fields(record).items():
            entry.setdefault(key, _json_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
