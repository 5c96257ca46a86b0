"""The fixture and `start_local_cluster` themselves: start-up, kubeconfig, identities, kubectl."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import yaml
from kubernetes import client, watch

from localcluster.harness import start_local_cluster


def test_the_kubeconfig_has_the_three_identities_and_a_verified_cluster(local_cluster):
    with open(local_cluster.kubeconfig) as f:
        config = yaml.safe_load(f)
    assert config["current-context"] == "laborchestrator"
    assert {c["name"] for c in config["contexts"]} == {"laborchestrator", "nobody", "admin"}
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == local_cluster.url
    assert cluster["certificate-authority-data"]
    assert "insecure-skip-tls-verify" not in cluster
    tokens = {u["user"]["token"] for u in config["users"]}
    assert len(tokens) == 3
    assert (local_cluster.state_dir / "ca.crt").exists()


def test_api_client_verifies_tls_with_the_cluster_ca(local_cluster):
    configuration = local_cluster.api_client().configuration
    assert configuration.verify_ssl is True
    assert configuration.ssl_ca_cert


def test_start_local_cluster_outside_pytest_starts_fast_and_stops_cleanly(tmp_path):
    started = time.monotonic()
    with start_local_cluster(tmp_path / "state", extra_args=("--watch-history", "3")) as cluster:
        ready_after = time.monotonic() - started
        core = client.CoreV1Api(cluster.api_client("admin"))
        for name in ("h1", "h2", "h3"):
            core.create_namespace({"metadata": {"name": name}})
        # Older than the 3 events kept: the watch answers 410 Gone (an ERROR event, as real servers do).
        with pytest.raises(client.ApiException) as err:
            for _ in watch.Watch().stream(core.list_namespace, resource_version="2", timeout_seconds=1):
                pass
        assert err.value.status == 410
        process = cluster.process
    assert process is not None and process.returncode == 0  # SIGTERM shut it down cleanly
    # "Well under a second" on an idle machine; generous here because other suites share the CPUs.
    assert ready_after < 5, ready_after


def test_kubectl_works_against_the_cluster(local_cluster, ns):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("needs kubectl (https://kubernetes.io/docs/tasks/tools/; not in Debian bookworm main)")

    def run(*args: str, context: str = "admin", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, "--kubeconfig", local_cluster.kubeconfig, "--context", context, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            input=stdin,
        )

    # kubectl's typed commands (`create secret`) send protobuf, which localcluster does not speak;
    # manifests go as JSON.
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-kubectl\nstringData:\n  k: v\n"
    created = run("create", "-n", ns, "-f", "-", "--validate=false", stdin=manifest)
    assert created.returncode == 0, created.stderr
    listed = run("get", "secrets", "-n", ns, "-o", "name")
    assert listed.stdout.split() == ["secret/from-kubectl"], listed.stderr
    vmi = run("get", "vmi", "-n", ns)
    assert vmi.returncode == 0, vmi.stderr
    denied = run("get", "secrets", "-n", ns, context="nobody")
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    deleted = run("delete", "secret", "from-kubectl", "-n", ns)
    assert deleted.returncode == 0, deleted.stderr
