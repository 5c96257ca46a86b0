"""Helpers for the local cluster's own tests (imported by the test modules and conftest)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

EXAMPLES = Path(__file__).resolve().parents[2] / "localcluster" / "schemas" / "kubevirt-examples"
KV = ("kubevirt.io", "v1")


def example(name: str = "vmi-fedora") -> dict[str, Any]:
    with open(EXAMPLES / f"{name}.yaml") as f:
        return yaml.safe_load(f)


def small_vmi(name: str, labels: dict[str, str] | None = None, memory: str = "64Mi") -> dict[str, Any]:
    """The shape Lab Orchestrator creates: containerDisk, bridge on the pod network."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "domain": {
                "memory": {"guest": memory},
                "devices": {
                    "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "default", "bridge": {}}],
                },
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/cirros:0.6"}}],
        },
    }


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01) -> Any:
    """The check's first truthy result; the generous timeout only matters when it never comes (a
    loaded CI machine can take seconds where an idle one takes milliseconds)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The `Status` object an error response carries."""
    return json.loads(exc.body)


class Vmis:
    """The VMI calls of CustomObjectsApi with group/version/plural filled in."""

    def __init__(self, api: client.CustomObjectsApi) -> None:
        self.api = api

    def create(self, ns: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(*KV, ns, "virtualmachineinstances", body, **kw)

    def get(self, ns: str, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(*KV, ns, "virtualmachineinstances", name)

    def list(self, ns: str, **kw: Any) -> dict[str, Any]:
        return self.api.list_namespaced_custom_object(*KV, ns, "virtualmachineinstances", **kw)

    def delete(self, ns: str, name: str) -> dict[str, Any]:
        return self.api.delete_namespaced_custom_object(*KV, ns, "virtualmachineinstances", name)

    def patch(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(*KV, ns, "virtualmachineinstances", name, body)

    def running(self, ns: str, name: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            vmi = self.get(ns, name)
            return vmi if vmi.get("status", {}).get("phase") == "Running" else None

        return wait_for(check)


def call(
    api: client.ApiClient, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> Any:
    """A raw call through the official client (for paths it has no method for); returns the response."""
    method_, url, headers, body_, post_params = api.param_serialize(
        method=method,
        resource_path=path,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method_, url, header_params=headers, body=body_, post_params=post_params)
    response.read()
    api.response_deserialize(response, {"2XX": None})  # raises ApiException unless 2xx
    return response


def vmi_subresource(api: client.ApiClient, ns: str, name: str, action: str, method: str = "PUT") -> Any:
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/{action}"
    return call(api, method, path, body={} if method == "PUT" else None)
