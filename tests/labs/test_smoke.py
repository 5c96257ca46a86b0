"""`python -m labs.smoke`, the real-cluster smoke test, run here against local clusters (so CI runs
it): it passes where everything works, and names the step and what is left where something fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = [
    "start the lab",
    "wait until its machine runs",
    "read its serial console through the relay",
    "pause it until the cluster confirms",
    "resume it until the cluster confirms",
    "stop it and wait until its namespace is gone",
    "check that nothing is left",
]


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KUBECONFIG", "INSTALLATION_ID")}
    return subprocess.run(
        [sys.executable, "-m", "labs.smoke", *args],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_smoke_test_passes_against_a_local_cluster_it_starts():
    result = smoke("--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    for step in STEPS:
        assert f"[smoke] ok {step}" in result.stdout
    assert "the guest said b'localcluster none-runtime console smoke-" in result.stdout
    assert result.stdout.rstrip().endswith("[smoke] PASSED")


def test_a_console_that_cannot_be_opened_fails_the_smoke_test_and_the_lab_is_still_removed(local_cluster):
    local_cluster.faults.fail("get", "virtualmachineinstances/console", status=500, times=None)

    result = smoke(
        "--kubeconfig", local_cluster.kubeconfig, "--context", "laborchestrator", "--check-context", "admin",
        "--timeout", "60",
    )  # fmt: skip

    assert result.returncode == 1
    assert "[smoke] FAILED read its serial console through the relay" in result.stdout
    assert "[smoke] ok check that nothing is left" in result.stdout  # stopped after the failure
    assert "pause it" not in result.stdout


def test_what_the_cluster_keeps_is_named(local_cluster):
    # The namespace can never be deleted: the stop fails and the namespace stays.
    local_cluster.faults.fail("delete", "namespaces", status=503, times=None)

    result = smoke(
        "--kubeconfig", local_cluster.kubeconfig, "--context", "laborchestrator", "--check-context", "admin",
        "--timeout", "60",
    )  # fmt: skip

    assert result.returncode == 1
    assert "[smoke] FAILED stop it and wait until its namespace is gone" in result.stdout
    left = re.search(
        r"FAILED check that nothing is left: left in the cluster: namespace (\S+) \(Active\)", result.stdout
    )
    assert left, result.stdout
    local_cluster.faults.clear()
    client.CoreV1Api(local_cluster.api_client("admin")).delete_namespace(left.group(1))
