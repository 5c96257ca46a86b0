"""A start whose process dies mid-way (SIGKILL while the cluster holds its VMI create) loses its lease:
the student's next start is allowed within the lease time, and reconcile rolls it back in one pass;
a start that is slow but alive keeps renewing its lease and is never failed for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from labs import lifecycle
from labs.exceptions import InstanceLimitReached
from labs.models import LabInstance
from tests.labs.conftest import namespace_exists, wait_for
from tests.vncproxy.app_server import REPO_ROOT, database_url, use_file_sqlite_test_database

# The start runs in a process of its own, which must see this test's rows.
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"labs-test-{os.getpid()}.sqlite3")

pytestmark = pytest.mark.django_db(transaction=True)
Status = LabInstance.Status

LEASE_SECONDS = 4.0
START_IN_A_PROCESS = """
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
from labs import lifecycle
from labs.models import Lab
user = get_user_model().objects.get(pk=int(sys.argv[1]))
lifecycle.instance_start(user=user, lab=Lab.objects.get(pk=int(sys.argv[2])))
"""


def vmi_create_pending(local_cluster) -> bool:
    calls = local_cluster.faults.calls()
    return any((c["verb"], c["resource"]) == ("create", "virtualmachineinstances") for c in calls)


def start_then_kill(app_cluster, admin_core, student, lab, log_file: Path) -> tuple[LabInstance, float]:
    """Start the lab in another process, SIGKILL it while its VMI create hangs; when it was killed."""
    app_cluster.faults.hang("create", "virtualmachineinstances", seconds=120)
    app_cluster.faults.reset_calls()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": database_url(),
        "SECRET_KEY": django_settings.SECRET_KEY,
        "KUBECONFIG": str(app_cluster.kubeconfig),
        "KUBE_CONTEXT": "laborchestrator",
        "KUBE_REQUEST_TIMEOUT": "200",
        "LABS_START_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    args = [sys.executable, "-c", START_IN_A_PROCESS, str(student.pk), str(lab.pk)]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: vmi_create_pending(app_cluster) or process.poll() is not None, timeout=60)
        assert process.poll() is None, log_file.read_text()
        instance = LabInstance.objects.get(owner=student)
        assert instance.status == Status.REQUESTED
        assert namespace_exists(admin_core, instance.namespace)  # with its policy, quota and Secrets
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return instance, time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_next_start_is_allowed_within_the_lease_time_after_a_crash(
    app_cluster, admin_core, make_lab, student, settings, tmp_path
):
    settings.LABS_START_LEASE_SECONDS = LEASE_SECONDS
    lab = make_lab()
    crashed, killed_at = start_then_kill(app_cluster, admin_core, student, lab, tmp_path / "start.log")
    app_cluster.faults.clear()

    # Right after the crash the lease still runs (the start's process might only be slow).
    with pytest.raises(InstanceLimitReached):
        lifecycle.instance_start(user=student, lab=lab)

    def next_start() -> LabInstance | None:
        try:
            return lifecycle.instance_start(user=student, lab=lab)
        except InstanceLimitReached:
            return None

    retried = wait_for(next_start, timeout=LEASE_SECONDS + 20, interval=0.5)

    assert time.monotonic() - killed_at < LEASE_SECONDS + 15
    assert retried.status == Status.STARTING
    crashed.refresh_from_db()
    assert (crashed.status, crashed.last_error) == (Status.FAILED, "The start was interrupted.")
    wait_for(lambda: not namespace_exists(admin_core, crashed.namespace))


def test_reconcile_rolls_a_crashed_start_back_in_one_pass(
    app_cluster, admin_core, make_lab, student, settings, tmp_path
):
    crashed, killed_at = start_then_kill(app_cluster, admin_core, student, make_lab(), tmp_path / "start.log")
    app_cluster.faults.clear()

    # Passes while the lease runs leave it alone; the first pass after it fails it and deletes its
    # namespace, with no second pass needed.
    wait_for(lambda: crashed.pk in lifecycle.reconcile().failed, timeout=LEASE_SECONDS + 20, interval=0.5)

    assert time.monotonic() - killed_at < LEASE_SECONDS + 15
    crashed.refresh_from_db()
    assert crashed.status == Status.FAILED
    wait_for(lambda: not namespace_exists(admin_core, crashed.namespace))
    assert not LabInstance.objects.active().filter(owner=student).exists()


def test_a_slow_start_that_is_alive_keeps_its_lease(app_cluster, admin_core, make_lab, student, settings):
    settings.LABS_START_LEASE_SECONDS = 1.0
    settings.KUBE_REQUEST_TIMEOUT = 30
    lab = make_lab()
    app_cluster.faults.hang("create", "virtualmachineinstances", seconds=4)
    app_cluster.faults.reset_calls()
    outcome: dict[str, object] = {}

    def start() -> None:
        try:
            outcome["instance"] = lifecycle.instance_start(user=student, lab=lab)
        except Exception as error:
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=start)
    thread.start()
    wait_for(lambda: vmi_create_pending(app_cluster), timeout=30)
    instance = LabInstance.objects.get(owner=student)

    # Several leases long, while the VMI create hangs: reconcile must not take the start for dead.
    watched_until = time.monotonic() + 2.5
    while time.monotonic() < watched_until and thread.is_alive():
        assert instance.pk not in lifecycle.reconcile().failed
        time.sleep(0.2)
    thread.join(timeout=60)

    assert "error" not in outcome, outcome.get("error")
    instance.refresh_from_db()
    assert instance.status == Status.STARTING
    assert namespace_exists(admin_core, instance.namespace)
