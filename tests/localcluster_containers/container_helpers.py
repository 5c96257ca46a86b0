"""Pods and waits for the container tests."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from kubernetes import client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from localcluster.containers import toolsimage
from localcluster.harness import LocalCluster

TOOLS = "registry.localcluster.test/tools:1"
NEEDED = {
    "runc": "runc",
    "umoci": "umoci",
    "vde_plug2tap": "vde2",
    "dnsmasq": "dnsmasq-base",
    "nsenter": "util-linux",
}


def missing() -> str | None:
    """Why this machine cannot run the container tests (they skip saying so), or None."""
    if os.geteuid() != 0:
        return "container tests need root (runc creates namespaces and cgroups)"
    packages = {pkg for exe, pkg in NEEDED.items() if shutil.which(exe) is None}
    packages |= set(toolsimage.missing_packages())
    if packages:
        return "container tests need: apt-get install " + " ".join(sorted(packages))
    return None


def new_namespace(api: client.CoreV1Api) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    api.create_namespace({"metadata": {"name": name}})
    return name


def pod(name: str, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": spec.pop("image", TOOLS)}
    if command is not None:
        container["command"] = command
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container], **spec},
    }


def wait_for(api: client.CoreV1Api, namespace: str, name: str, predicate, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = api.read_namespaced_pod(name, namespace)
        if predicate(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"pod {namespace}/{name} never got there: {last.status if last else None}")


def running(p: Any) -> bool:
    return p.status.phase == "Running" and bool(p.status.container_statuses[0].state.running)


def exec_frames(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    command: list[str],
    *,
    tty: bool = False,
    stdin_frames: list[bytes] = (),
    protocol: str = "v5.channel.k8s.io",
    timeout: float = 20.0,
) -> tuple[dict[int, bytes], dict[str, Any] | None, str | None]:
    """Run pods/exec over a websocket; returns (bytes per channel, the error channel's Status, protocol)."""
    query = [("command", part) for part in command] + [
        ("stdout", "true"),
        ("stderr", "false" if tty else "true"),
        ("stdin", "true" if stdin_frames else "false"),
        ("tty", "true" if tty else "false"),
    ]
    url = (
        cluster.url.replace("https://", "wss://")
        + f"/api/v1/namespaces/{namespace}/pods/{name}/exec?{urlencode(query)}"
    )
    received: dict[int, bytes] = {}
    status = None
    with connect(
        url,
        ssl=cluster.ssl_context(),
        subprotocols=[protocol],
        additional_headers={"Authorization": f"Bearer {cluster.token('admin')}"},
        open_timeout=timeout,
    ) as ws:
        for frame in stdin_frames:
            ws.send(frame)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            except (ConnectionClosed, TimeoutError):  # the server ended the stream: done
                break
            channel, payload = message[0], message[1:]
            if channel == 3:
                status = json.loads(payload)
            else:
                received[channel] = received.get(channel, b"") + payload
        return received, status, ws.subprotocol
