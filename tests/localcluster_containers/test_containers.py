"""Pods as real runc containers on the local cluster: network, statuses, faults, exec, leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.harness import start_local_cluster
from tests.localcluster_containers.container_helpers import (
    exec_frames,
    new_namespace,
    pod,
    running,
    wait_for,
)


@pytest.fixture
def api(container_cluster):
    return client.CoreV1Api(container_cluster.api_client("admin"))


def _terminated(p):
    statuses = p.status.container_statuses or []
    return bool(statuses) and statuses[0].state.terminated is not None


def test_pod_runs_with_the_pod_ip_on_eth0_and_cluster_dns(api):
    ns = new_namespace(api)
    api.create_namespaced_pod(
        ns, pod("a", ["sh", "-c", "ip -4 addr show eth0; cat /etc/resolv.conf; sleep 1000"])
    )
    p = wait_for(api, ns, "a", running)
    ip = p.status.pod_ip
    assert ip.startswith("10.244.")
    log = wait_for(api, ns, "a", lambda _: "nameserver" in api.read_namespaced_pod_log("a", ns))
    text = api.read_namespaced_pod_log("a", ns)
    assert f"inet {ip}/24" in text, text
    assert "nameserver 10.96.0.10" in text and f"search {ns}.svc.cluster.local" in text
    assert log.status.conditions and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions
    )


def test_pods_of_one_namespace_reach_each_other_and_not_another_namespace(api):
    ns, other = new_namespace(api), new_namespace(api)
    api.create_namespaced_pod(ns, pod("a", ["sleep", "1000"]))
    api.create_namespaced_pod(other, pod("x", ["sleep", "1000"]))
    target = wait_for(api, ns, "a", running).status.pod_ip
    foreign = wait_for(api, other, "x", running).status.pod_ip
    api.create_namespaced_pod(
        ns,
        pod(
            "b", ["sh", "-c", f"ping -c 1 -W 2 {target} && ! ping -c 1 -W 1 {foreign}"], restartPolicy="Never"
        ),
    )
    done = wait_for(api, ns, "b", _terminated)
    log = api.read_namespaced_pod_log("b", ns)
    assert done.status.phase == "Succeeded", log
    assert done.status.container_statuses[0].state.terminated.reason == "Completed"


def test_a_command_that_exits_at_once_goes_to_crash_loop_back_off(api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("quits", ["sh", "-c", "echo bye; exit 3"]))
    p = wait_for(
        api,
        ns,
        "quits",
        lambda p: (
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting is not None
            and p.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
        ),
    )
    status = p.status.container_statuses[0]
    assert status.last_state.terminated.exit_code == 3
    assert status.last_state.terminated.reason == "Error"
    assert status.restart_count == 1
    assert "back-off 10s restarting failed container=main" in status.state.waiting.message
    assert p.status.phase == "Running"  # restarting, as the kubelet reports it


def test_a_command_not_found_is_a_start_error(api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("nope", ["no-such-command"], restartPolicy="Never"))
    p = wait_for(api, ns, "nope", _terminated)
    terminated = p.status.container_statuses[0].state.terminated
    assert terminated.reason == "StartError" and terminated.exit_code == 128
    assert "no-such-command" in terminated.message and "not found" in terminated.message
    assert p.status.phase == "Failed"


def test_memory_over_the_limit_is_oom_killed(api):
    ns = new_namespace(api)
    hog = "a=$(head -c 80000000 /dev/zero | tr '\\0' a); echo survived"
    api.create_namespaced_pod(
        ns,
        pod(
            "hog",
            ["sh", "-c", hog],
            restartPolicy="Never",
            container={"resources": {"limits": {"memory": "32Mi", "cpu": "1"}}},
        ),
    )
    p = wait_for(api, ns, "hog", _terminated, timeout=60)
    terminated = p.status.container_statuses[0].state.terminated
    assert terminated.reason == "OOMKilled", api.read_namespaced_pod_log("hog", ns)
    assert terminated.exit_code == 137
    assert "survived" not in api.read_namespaced_pod_log("hog", ns)


def test_a_missing_image_waits_in_err_image_pull(api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("ghost", image="registry.localcluster.test/ghost:1"))
    p = wait_for(
        api,
        ns,
        "ghost",
        lambda p: (
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
        ),
    )
    assert p.status.phase == "Pending"
    assert "registry.localcluster.test" in p.status.container_statuses[0].state.waiting.message


def test_exec_runs_a_command_with_the_exit_code_on_the_error_channel(container_cluster, api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("a", ["sleep", "1000"]))
    wait_for(api, ns, "a", running)
    out, status, protocol = exec_frames(
        container_cluster, ns, "a", ["sh", "-c", "echo out; echo err >&2; exit 7"]
    )
    assert protocol == "v5.channel.k8s.io"
    assert out[1] == b"out\n" and out[2] == b"err\n"
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    out, status, protocol = exec_frames(
        container_cluster, ns, "a", ["hostname"], protocol="v4.channel.k8s.io"
    )
    assert (
        protocol == "v4.channel.k8s.io"
        and out[1] == b"a\n"
        and status == {"metadata": {}, "status": "Success"}
    )


def test_exec_stdin_and_the_v5_close_signal(container_cluster, api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("a", ["sleep", "1000"]))
    wait_for(api, ns, "a", running)
    out, status, _ = exec_frames(
        container_cluster, ns, "a", ["wc", "-c"], stdin_frames=[b"\x00hello", bytes([255, 0])]
    )
    assert out[1].strip() == b"5" and status["status"] == "Success"


def test_exec_with_a_tty_follows_resize(container_cluster, api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("a", ["sleep", "1000"]))
    wait_for(api, ns, "a", running)
    resize = b"\x04" + json.dumps({"Width": 100, "Height": 33}).encode()
    out, status, _ = exec_frames(
        container_cluster, ns, "a", ["sh"], tty=True, stdin_frames=[resize, b"\x00stty size; exit 4\r"]
    )
    assert b"33 100" in out[1]
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}]


def test_exec_into_a_container_that_does_not_run_is_refused_before_the_upgrade(container_cluster, api):
    ns = new_namespace(api)
    api.create_namespaced_pod(ns, pod("done", ["true"], restartPolicy="Never"))
    wait_for(api, ns, "done", _terminated)
    with pytest.raises(Exception) as refused:
        exec_frames(container_cluster, ns, "done", ["sh"])
    assert "400" in str(refused.value)
    api.create_namespaced_pod(ns, pod("ghost", image="registry.localcluster.test/ghost:1"))
    with pytest.raises(Exception) as refused:
        exec_frames(container_cluster, ns, "ghost", ["sh"])
    assert "400" in str(refused.value)


def test_a_deleted_pod_leaves_no_process_cgroup_or_bundle(container_cluster, api):
    ns = new_namespace(api)
    api.create_namespaced_pod(
        ns, pod("a", ["sleep", "1000"], container={"resources": {"limits": {"memory": "64Mi"}}})
    )
    p = wait_for(api, ns, "a", running)
    uid = p.metadata.uid
    state = Path(container_cluster.state_dir) / "containers"
    assert (state / "pods" / uid).is_dir()
    assert _cgroups_named(uid)
    api.delete_namespaced_pod("a", ns)
    wait_for_gone(api, ns, "a")
    assert not (state / "pods" / uid).exists()
    assert not _cgroups_named(uid)
    assert uid not in _runc_list(state / "runc")


def wait_for_gone(api, ns, name, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.read_namespaced_pod(name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(0.05)
    raise AssertionError(f"{ns}/{name} was not deleted")


def _cgroups_named(uid: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/localcluster-*/{uid}")]


def _runc_list(root: Path) -> str:
    if not root.exists():
        return ""
    return subprocess.run(
        ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=False
    ).stdout


def test_a_crashed_servers_containers_are_cleaned_up_on_the_next_start(tmp_path, tools_images):
    args = ["--container-images", str(tools_images)]
    cluster_cm = start_local_cluster(tmp_path, extra_args=args)
    cluster = cluster_cm.__enter__()
    try:
        api = client.CoreV1Api(cluster.api_client("admin"))
        ns = new_namespace(api)
        api.create_namespaced_pod(
            ns, pod("a", ["sleep", "1000"], container={"resources": {"limits": {"memory": "64Mi"}}})
        )
        uid = wait_for(api, ns, "a", running).metadata.uid
        os.kill(cluster.process.pid, signal.SIGKILL)
        cluster.process.wait()
    finally:
        cluster_cm.__exit__(None, None, None)
    assert uid in _runc_list(tmp_path / "containers" / "runc")  # the container outlived its server
    with start_local_cluster(tmp_path, extra_args=args):
        assert _runc_list(tmp_path / "containers" / "runc").strip() == ""
        assert not _cgroups_named(uid)
        assert not (tmp_path / "containers" / "pods" / uid).exists()
