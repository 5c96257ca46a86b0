"""Two installations, each its own process with its own database and generated id, on one cluster:
neither adopts nor deletes the other's namespaces, although both name them `<prefix>-<id>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from kubernetes import client

from labs import manifests

REPO_ROOT = Path(__file__).resolve().parents[2]


class Installation:
    def __init__(self, tmp_path: Path, name: str, local_cluster, prefix: str) -> None:
        self.prefix = prefix
        env = {k: v for k, v in os.environ.items() if k not in ("INSTALLATION_ID", "DATABASE_URL")}
        self.env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / f'{name}.sqlite3'}",
            "LABORCHESTRATOR_VAR_DIR": str(tmp_path / name),
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "KUBECONFIG": str(local_cluster.kubeconfig),
            "KUBE_CONTEXT": "laborchestrator",
            "FAST_PASSWORD_HASHING": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }

    def run(self, *commands: str) -> list[dict]:
        result = subprocess.run(
            [sys.executable, "-m", "tests.labs.installation_process", self.prefix, *commands],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        prefix = "RESULT "
        return [
            json.loads(line[len(prefix) :]) for line in result.stdout.splitlines() if line.startswith(prefix)
        ]


def test_two_installations_on_one_cluster_leave_each_other_alone(tmp_path, local_cluster):
    core = client.CoreV1Api(local_cluster.api_client("admin"))
    prefix = f"twin{uuid.uuid4().hex[:6]}"
    first = Installation(tmp_path, "first", local_cluster, prefix)
    second = Installation(tmp_path, "second", local_cluster, prefix)

    first_id, started, waited = first.run("id", "start", "wait")
    assert started["namespace"] == f"{prefix}-1" and waited["instances"][0]["status"] == "running"

    # The second installation's first instance has the same id, so the same namespace name.
    second_id, refused, again, waited, reconciled = second.run("id", "start", "start", "wait", "reconcile")

    assert first_id["installation"] != second_id["installation"]
    assert (refused["namespace"], refused["status"]) == (f"{prefix}-1", "failed")
    assert "belongs to another Lab Orchestrator installation" in refused["last_error"]
    assert again["namespace"] == f"{prefix}-2"
    assert [i["status"] for i in waited["instances"]] == ["failed", "running"]
    assert reconciled["orphans_deleted"] == []
    first_namespace = core.read_namespace(f"{prefix}-1")
    assert first_namespace.status.phase == "Active"
    assert first_namespace.metadata.labels[manifests.INSTALLATION_LABEL] == first_id["installation"]

    (reconciled, stopped) = first.run("reconcile", "stop-all")

    assert reconciled["orphans_deleted"] == []
    assert [i["status"] for i in stopped["instances"]] == ["stopped"]
    second_namespace = core.read_namespace(f"{prefix}-2")
    assert second_namespace.status.phase == "Active"
    assert second_namespace.metadata.labels[manifests.INSTALLATION_LABEL] == second_id["installation"]

    (stopped,) = second.run("stop-all")
    assert [i["status"] for i in stopped["instances"]] == ["failed", "stopped"]
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert not names & {f"{prefix}-1", f"{prefix}-2"}
