"""`make run` (laborchestrator.devserver): Ctrl-C stops its labs before its local cluster, and records
why, instead of leaving them `running` to be failed as "deleted outside Lab Orchestrator" later.

A real devserver in a process group of its own, signalled the way a terminal's Ctrl-C signals the
foreground group: every process in it gets SIGINT. Simulated machines (LOCALCLUSTER_RUNTIME=none),
and a database and state directory of this test's own.
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.vncproxy.app_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
REASON = "Stopped because the local cluster shut down (make run ended)."


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; make run said:\n{log.read_text()}")
        time.sleep(0.2)


def test_ctrl_c_stops_the_running_labs_and_records_why(tmp_path):
    port, password = free_port(), secrets.token_urlsafe(16)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "KUBECONFIG", "KUBE_IN_CLUSTER", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        LABORCHESTRATOR_VAR_DIR=str(tmp_path),
        LOCALCLUSTER_RUNTIME="none",
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=password,
        FAST_PASSWORD_HASHING="1",
        LOG_LEVEL="WARNING",
    )
    log = tmp_path / "make-run.log"
    with open(log, "wb") as output:
        devserver = subprocess.Popen(
            [sys.executable, "-m", "laborchestrator.devserver", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as the foreground group of a terminal
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/healthz", timeout=5).ok, 120, "make run to serve", log)
        tokens = requests.post(
            f"{base}/api/auth/token/", json={"username": "admin", "password": password}, timeout=30
        )
        headers = {"Authorization": f"Bearer {tokens.json()['access']}"}
        started = requests.post(
            f"{base}/api/instances/", json={"lab": "explore-your-lab-network"}, headers=headers, timeout=60
        )
        assert started.status_code == 201, started.text
        instance_id = started.json()["id"]
        wait_for(
            lambda: (
                requests.get(f"{base}/api/instances/{instance_id}/", headers=headers, timeout=30).json()[
                    "status"
                ]
                == "running"
            ),
            60,
            "the demo lab to run",
            log,
        )

        os.killpg(devserver.pid, signal.SIGINT)  # Ctrl-C
        assert devserver.wait(timeout=120) == 0, log.read_text()
    finally:
        if devserver.poll() is None:
            os.killpg(devserver.pid, signal.SIGKILL)
            devserver.wait()

    assert "Stopping the running labs" in log.read_text()
    with sqlite3.connect(tmp_path / "db.sqlite3") as database:
        row = database.execute(
            "SELECT status, last_error, stopped_at IS NOT NULL FROM labs_labinstance WHERE id = ?",
            [instance_id],
        ).fetchone()
    assert row == ("stopped", REASON, 1)
