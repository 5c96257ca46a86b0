"""`python -m laborchestrator.serve`: uvicorn as deployed, tested as a real process over TCP.

The event loop it runs on, the answers to requests with huge headers (431 from the application, 400
from the server past what it holds), and the client address behind a proxy.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vncproxy.app_server import ServerProcess, run_app_server

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with run_app_server({"LOG_LEVEL": "INFO"}, log) as server:
        yield server


def exchange(address: str, request: bytes) -> bytes:
    """Send `request` whole and return everything the server answers until it closes or goes quiet."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer_complete(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def answer_complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is None or len(body) >= int(match[1])


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def websocket_handshake(path: str, *headers: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return get(
        path,
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Origin: http://localhost",
        *headers,
    ).replace(b"Connection: close\r\n", b"")


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_serves_on_uvloop_by_default(server):
    assert status(exchange(server.address, get("/healthz"))) == 200
    assert "uvloop/loop." in loaded_libraries(server.pid)


def test_event_loop_asyncio_keeps_pythons_loop(tmp_path):
    with run_app_server({"EVENT_LOOP": "asyncio"}, tmp_path / "server.log") as asyncio_server:
        assert status(exchange(asyncio_server.address, get("/healthz"))) == 200
        assert "uvloop/loop." not in loaded_libraries(asyncio_server.pid)


def test_a_100_kb_authorization_header_is_answered_431(server):
    answer = exchange(server.address, get("/api/labs/", f"Authorization: Bearer {'a' * 100_000}"))
    assert status(answer) == 431
    assert b"at most 32768 bytes of headers" in answer


def test_a_60_kb_cookie_is_answered_431_on_a_page_and_a_console_handshake(server):
    cookie = f"Cookie: sessionid=x; filler={'c' * 60_000}"
    assert status(exchange(server.address, get("/", cookie))) == 431
    answer = exchange(server.address, websocket_handshake("/ws/instances/1/machines/vm0/serial", cookie))
    assert status(answer) == 431
    assert b"Request header fields too large" in answer


def test_headers_just_under_the_limit_pass(server):
    assert status(exchange(server.address, get("/healthz", f"X-Filler: {'f' * 30_000}"))) == 200


def test_past_what_the_server_holds_it_answers_400_and_closes(server):
    """Beyond 1 MiB of request head (h11's limit, laborchestrator/serve.py), the server answers
    before the application could: 400, the connection closed, nothing held."""
    started = time.monotonic()
    answer = exchange(server.address, get("/", f"Cookie: {'c' * 2_000_000}"))
    assert status(answer) == 400
    assert time.monotonic() - started < TIMEOUT


def test_proxy_headers_give_the_clients_address(tmp_path):
    log = tmp_path / "server.log"
    with run_app_server({"LOG_LEVEL": "INFO"}, log, proxy_headers=True) as proxied:
        request = get("/healthz", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
        assert status(exchange(proxied.address, request)) == 200
        deadline = time.monotonic() + TIMEOUT
        while '203.0.113.7:0 - "GET /healthz HTTP/1.1" 200' not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
