"""Logs an operator can feed to a collector: JSON lines, a request id on each, no secret in any."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from laborchestrator.logging import (
    REDACTED,
    JSONFormatter,
    RedactSecretsFilter,
    RequestIDFilter,
    clean_request_id,
    redact,
    request_id_var,
)
from tests.deploy.manifests import REPO_ROOT


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestIDFilter())
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    token = request_id_var.set("-")
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        request_id_var.reset(token)


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    # One object per line: a multi-line message or traceback must not split a record.
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_is_one_json_line_with_the_standard_fields_and_extras(json_log) -> None:
    logger = logging.getLogger("laborchestrator.test")
    logger.warning("instance %s failed\nsecond line", 42, extra={"instance_id": 42, "lab": "net-101"})
    (entry,) = lines(json_log)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "laborchestrator.test"
    assert entry["message"] == "instance 42 failed\nsecond line"
    assert entry["request_id"] == "-"
    assert entry["instance_id"] == 42 and entry["lab"] == "net-101"
    assert entry["time"].endswith("+00:00")


def test_a_traceback_stays_inside_its_record(json_log) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("x").exception("it broke")
    (entry,) = lines(json_log)
    assert "ValueError: bad" in entry["exception"]


def test_the_ingress_request_id_is_logged_and_returned(client, json_log) -> None:
    response = client.get("/no-such-page/?ticket=t0p-s3cret", HTTP_X_REQUEST_ID="a1b2c3d4e5f6")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "a1b2c3d4e5f6"
    entry = next(e for e in lines(json_log) if e["logger"] == "django.request")
    assert entry["request_id"] == "a1b2c3d4e5f6"
    assert entry["status_code"] == 404
    assert entry["request"] == {"method": "GET", "path": "/no-such-page/"}
    assert "t0p-s3cret" not in json_log.getvalue()


async def test_the_request_id_reaches_logs_under_asgi(async_client, json_log) -> None:
    response = await async_client.get("/no-such-page/", headers={"X-Request-ID": "asgi-req-7"})
    assert response["X-Request-ID"] == "asgi-req-7"
    assert [e["request_id"] for e in lines(json_log) if e["logger"] == "django.request"] == ["asgi-req-7"]


@pytest.mark.parametrize("bad", ["x" * 65, "id with spaces", "forged\nline", "<script>", ""])
def test_an_unsafe_request_id_is_replaced(client, bad: str) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32


def test_a_request_without_id_gets_a_fresh_one_each_time(client) -> None:
    first, second = (client.get("/healthz")["X-Request-ID"] for _ in range(2))
    assert first != second and clean_request_id(first) == first


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("headers {'HTTP_AUTHORIZATION': 'Bearer abcdefghijklmnop'}", "abcdefghijklmnop"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("login failed password=hunter2 user=bob", "hunter2"),
        ('{"username": "bob", "password": "hunter2"}', "hunter2"),
        ("GET /ws/vnc/?ticket=Zm9vYmFy&w=1", "Zm9vYmFy"),
        ("refresh_token: 0123456789abcdef", "0123456789abcdef"),
        ("connecting to postgres://lab:pg-s3cret@postgres:5432/lab", "pg-s3cret"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl", "eyJ1c2VyX2lkIjoxfQ"),
        ("ADMIN_PASSWORD_FILE=/run/secrets/x SECRET_KEY=abc123", "abc123"),
        ('"POST /classes/sign-in/Kx8_2-aZq9WlPq/ HTTP/1.1" 302', "Kx8_2-aZq9WlPq"),
    ],
)
def test_secrets_are_redacted(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert REDACTED in redact(line)


def test_harmless_lines_are_left_alone() -> None:
    line = "GET /labs/net-101/ 200 from http://labs.example.edu:8000/x in 12 ms"
    assert redact(line) == line


def test_secrets_are_redacted_in_messages_arguments_extras_and_tracebacks(json_log) -> None:
    logger = logging.getLogger("laborchestrator.test")
    logger.info(
        "console opened with %s", "ticket=abc123xyz", extra={"password": "hunter2", "note": "token=zzz9"}
    )
    try:
        raise RuntimeError("cannot reach redis://:r3dis-pw@redis:6379/0")
    except RuntimeError:
        logger.exception("channel layer down")
    text = json_log.getvalue()
    for secret in ("abc123xyz", "hunter2", "zzz9", "r3dis-pw"):
        assert secret not in text
    first, second = lines(json_log)
    assert first["password"] == REDACTED
    assert "redis://:[REDACTED]@redis" in second["exception"]


def test_log_format_json_configures_stdout_json_lines() -> None:
    # The setting as an operator sets it: a fresh process, the real LOGGING configuration.
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('laborchestrator').warning('db at postgres://u:pw-123@db/x', extra={'k': 1})"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "laborchestrator.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (entry,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert entry["message"] == "db at postgres://u:[REDACTED]@db/x"
    assert entry["k"] == 1 and entry["request_id"] == "-"
    assert result.stderr == ""


def test_a_malformed_log_call_is_logged_not_raised(json_log) -> None:
    logging.getLogger("x").warning("two %s %s", "password=only-one")
    (entry,) = lines(json_log)
    assert "only-one" not in entry["message"]
