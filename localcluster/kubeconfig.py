"""The kubeconfig the application (and kubectl) use to reach the local cluster, like any cluster."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from localcluster.rbac import Identity

CLUSTER_NAME = "localcluster"


def render(
    server_url: str, ca_cert_pem: bytes, identities: list[Identity], current: str
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_cert_pem).decode(),
                },
            }
        ],
        "users": [{"name": i.context, "user": {"token": i.token}} for i in identities],
        "contexts": [
            {"name": i.context, "context": {"cluster": CLUSTER_NAME, "user": i.context}} for i in identities
        ],
        "current-context": current,
    }


def write(
    path: Path,
    server_url: str,
    ca_cert_pem: bytes,
    identities: list[Identity],
    current: str = "laborchestrator",
) -> None:
    """Written with mode 0600 (it holds tokens), atomically so a reader never sees half a file."""
    text = yaml.safe_dump(render(server_url, ca_cert_pem, identities, current), sort_keys=False)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
