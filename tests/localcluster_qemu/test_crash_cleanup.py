"""No stray QEMU after a server crash: children die with the server, and pidfiles catch the rest."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from localcluster.harness import start_local_cluster
from localcluster.qemu.process import PidRegistry
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import (
    TOOLS,
    demo_images,
    demo_vmi,
    dnsmasq_pids,
    qemu_pids,
    qemu_switch_dirs,
    switch_pids,
    wait_for,
)

VMI = ("kubevirt.io", "v1")


def _sleeper(marker: str) -> subprocess.Popen[bytes]:
    # A stand-in child whose command line names the run dir, like QEMU's does.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])


def _record_as_dead_owner(registry: PidRegistry, pid: int, marker: str, run_dir: Path) -> None:
    registry.record(pid, marker, run_dir)
    pidfile = registry.folder / f"{pid}.json"
    record = json.loads(pidfile.read_text())
    record.update(owner_pid=2**22 + 7, owner_start="1")  # a server that no longer exists
    pidfile.write_text(json.dumps(record))


def test_next_start_kills_children_of_a_dead_server_only(tmp_path: Path) -> None:
    registry = PidRegistry(tmp_path / "pids")
    run_dir = tmp_path / "lcq-old"
    run_dir.mkdir()
    orphan = _sleeper(str(run_dir / "vm1"))
    recycled = _sleeper("some-unrelated-process")  # pid recorded, but no longer ours
    ours_alive = _sleeper(str(run_dir / "vm2"))
    try:
        _record_as_dead_owner(registry, orphan.pid, str(run_dir / "vm1"), run_dir)
        _record_as_dead_owner(registry, recycled.pid, str(run_dir / "vm9"), run_dir)
        registry.record(ours_alive.pid, str(run_dir / "vm2"), run_dir)  # owner: this live process

        assert PidRegistry(tmp_path / "pids").reap_stale() == [orphan.pid]

        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert recycled.poll() is None, "a process whose command line does not match must survive"
        assert ours_alive.poll() is None, "children of a live server must survive"
        assert sorted(p.name for p in registry.folder.iterdir()) == [f"{ours_alive.pid}.json"]
    finally:
        for proc in (orphan, recycled, ours_alive):
            proc.kill()
            proc.wait()


@pytest.mark.qemu
def test_killed_server_takes_its_vms_and_networks_with_it(tmp_path: Path) -> None:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    images = demo_images()
    with start_local_cluster(tmp_path / "state", runtime="qemu", images=images) as cluster:
        api = cluster.api_client("admin")
        ns = f"qemu-crash-{secrets.token_hex(3)}"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", demo_vmi("vm"))

        def running() -> bool:
            obj = custom.get_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", "vm")
            return (obj.get("status") or {}).get("phase") == "Running"

        wait_for(running, 60, "the VMI to run")
        guest = f"{ns}/vm"
        switches = qemu_switch_dirs(guest)
        assert qemu_pids(guest) and switch_pids(switches) and dnsmasq_pids(switches)
        assert cluster.process is not None
        os.kill(cluster.process.pid, signal.SIGKILL)  # no chance to clean up
        cluster.process.wait()
        deadline = time.monotonic() + 15
        while (
            qemu_pids(guest) or switch_pids(switches) or dnsmasq_pids(switches)
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not qemu_pids(guest), "QEMU outlived its server"
        assert not switch_pids(switches), "vde_switch outlived its server"
        assert not dnsmasq_pids(switches), "the lab network's dnsmasq outlived its server"
