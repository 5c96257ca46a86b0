"""Rate limits hold under parallel requests spread over two real app processes sharing Redis.

Each app process is the real app server (tests/vncproxy/app_server.py) on this test database; the
counts live in Redis database 11 (emptied before and after; Debian: redis-server). DRF's own
throttles read and rewrite their history in two steps: here 46-49 of 50 parallel starts passed a
30/hour limit, and 100 parallel ticket requests got 100 tickets against 60/minute.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from tests.conftest import require_service
from tests.vncproxy.app_server import database_url, run_app_server, use_file_sqlite_test_database

# Collected before any test runs, so before the test database is created (both processes open it).
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"api-test-{os.getpid()}.sqlite3")

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def redis_url():
    require_service(lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping(), "Redis", "redis-server")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def two_app_processes(redis_url, django_db_blocker, tmp_path):
    with django_db_blocker.unblock():
        url = database_url()
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": settings.SECRET_KEY,
        "REDIS_URL": redis_url,
        "FAST_PASSWORD_HASHING": "1",
        "API_THROTTLE_INSTANCE_START": "30/hour",
        "API_THROTTLE_CONSOLE_TICKET": "60/minute",
        "SIGNIN_THROTTLE_USERNAME": "10/10min",
        "SIGNIN_THROTTLE_ADDRESS": "",
        "LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        yield [stack.enter_context(run_app_server(env, tmp_path / f"app-{n}.log")) for n in (1, 2)]


def in_parallel(servers, count: int, send) -> Counter:
    """`count` requests at once, alternating between the servers; how many got each status."""
    start = threading.Barrier(count)

    def one(index: int) -> int:
        base = f"http://{servers[index % len(servers)].address}"
        start.wait(timeout=60)
        return send(base).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(one, range(count)))


def test_parallel_starts_pass_the_start_limit_exactly_thirty_times(two_app_processes, student):
    headers = {"Authorization": f"Bearer {AccessToken.for_user(student)}"}
    statuses = in_parallel(
        two_app_processes,
        50,
        lambda base: requests.post(
            f"{base}/api/instances/", json={"lab": "no-such-lab"}, headers=headers, timeout=60
        ),
    )
    # Past the limit, the start itself answers (400: no such lab); over it, 429.
    assert statuses == Counter({400: 30, 429: 20})


def test_parallel_ticket_requests_pass_the_ticket_limit_exactly_sixty_times(two_app_processes, student):
    headers = {"Authorization": f"Bearer {AccessToken.for_user(student)}"}
    url = "/api/instances/999999/machines/vm0/ticket/"
    statuses = in_parallel(
        two_app_processes,
        100,
        lambda base: requests.post(f"{base}{url}", json={"kind": "vnc"}, headers=headers, timeout=60),
    )
    assert statuses == Counter({404: 60, 429: 40})


def test_parallel_wrong_passwords_get_exactly_ten_tries(two_app_processes, student):
    body = {"username": "alice", "password": "wrong"}
    statuses = in_parallel(
        two_app_processes, 50, lambda base: requests.post(f"{base}/api/auth/token/", json=body, timeout=60)
    )
    assert statuses == Counter({401: 10, 429: 40})
