"""Run the application under a real server process (`python -m laborchestrator.serve`: uvicorn, as
deployed) for the end-to-end tests and the benchmarks.

The server process must see the test's rows: with PostgreSQL it connects to pytest-django's test
database (its name is passed on); with SQLite the test database is made a file for this purpose
(`use_file_sqlite_test_database`), because an in-memory database cannot be shared with a process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def use_file_sqlite_test_database(path: Path) -> None:
    """Before the test database exists: make an SQLite test database a file both processes open."""
    from django.conf import settings
    from django.db import connections

    for databases in (settings.DATABASES, connections.settings):
        default = databases["default"]
        if default["ENGINE"].endswith("sqlite3"):
            default.setdefault("TEST", {})
            if not default["TEST"].get("NAME") or "memory" in str(default["TEST"]["NAME"]):
                default["TEST"]["NAME"] = str(path)


def database_url() -> str:
    """The URL of the database this (test) process uses now, for another process."""
    from django.db import connection

    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{config['NAME']}"
    user = config.get("USER") or ""
    password = f":{config['PASSWORD']}" if config.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host, port = config.get("HOST") or "127.0.0.1", config.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{config['NAME']}"


@dataclass(frozen=True)
class ServerProcess:
    address: str  # host:port
    pid: int
    log_file: Path

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def listening_process(
    args: list[str], port: int, log_file: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Start a server process and wait (30 s at most) until it accepts connections on `port`;
    stop it afterwards. Its output goes to `log_file`, which the error quotes if it never listens."""
    with open(log_file, "wb") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start: {log_file.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The installation the suite is (tests/conftest.py's `_one_installation`). Server processes get it too:
# left to themselves they would read it from the database, where a transactional test's flush deletes
# it, so the next start would label its namespace with a new id that the status watcher (which read the
# old one) never selects.
SUITE_ENV = {"DJANGO_SETTINGS_MODULE": "laborchestrator.settings", "INSTALLATION_ID": "test-suite"}


@contextlib.contextmanager
def run_app_server(
    env: dict[str, str], log_file: Path, *, proxy_headers: bool = False
) -> Iterator[ServerProcess]:
    """Serve laborchestrator.asgi on a free loopback port, as deployed."""
    port = free_port()
    full_env = {**os.environ, **SUITE_ENV, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    # As deployed: uvicorn on uvloop (EVENT_LOOP=asyncio in `env` selects asyncio's loop).
    args = [sys.executable, "-m", "laborchestrator.serve", "--host", "127.0.0.1", "--port", str(port)]
    if proxy_headers:
        args.append("--proxy-headers")
    with listening_process(args, port, log_file, full_env) as process:
        yield ServerProcess(address=f"127.0.0.1:{port}", pid=process.pid, log_file=log_file)


@contextlib.contextmanager
def run_status_watcher(env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen]:
    """`manage.py watch_cluster` with the server's settings: pages read status it writes (labs.watcher)."""
    full_env = {**os.environ, **SUITE_ENV, **env}
    args = [sys.executable, "manage.py", "watch_cluster"]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def run_console_server(
    django_db_blocker, local_cluster, log_file: Path, extra_env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """The app server for the console tests: this test database, the test's local cluster, INFO logs."""
    from django.conf import settings

    with django_db_blocker.unblock():
        url = database_url()
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": settings.SECRET_KEY,
        "KUBECONFIG": str(local_cluster.kubeconfig),
        "KUBE_CONTEXT": "laborchestrator",
        "CONSOLE_IDLE_TIMEOUT_SECONDS": "60",
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    with run_app_server(env, log_file) as server:
        yield server
