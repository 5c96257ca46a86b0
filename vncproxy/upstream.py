"""Opening a VMI's `vnc`/`console` websocket on the cluster's API server.

Where to connect and with which TLS material and token comes from `labs.cluster` (the one module
that knows the cluster connection); this module only speaks the websocket: subprotocol
`plain.kubevirt.io`, binary frames, no compression (VNC and serial bytes are either already
compressed or tiny, and deflate would cost more CPU than the relay itself).
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from labs import cluster
from labs.exceptions import ClusterError

KUBEVIRT_SUBPROTOCOL = Subprotocol("plain.kubevirt.io")
UPSTREAM_KIND = {"vnc": "vnc", "serial": "console"}  # route kind → KubeVirt subresource


class UpstreamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamNotRunning(UpstreamError):
    """virt-api answered 400 before the upgrade: the VMI is not running."""


class UpstreamUnavailable(UpstreamError):
    """The API server could not be reached, refused us, or answered something else."""


async def open_upstream(*, namespace: str, name: str, kind: str) -> ClientConnection:
    """An open websocket to the machine's `vnc` or `console` (kind "vnc" or "serial")."""
    try:
        # Off the event loop: the first call loads the kubeconfig and the CA bundle from disk.
        target = await asyncio.to_thread(
            cluster.subresource_websocket_target, namespace=namespace, name=name, kind=UPSTREAM_KIND[kind]
        )
    except ClusterError as error:
        raise UpstreamUnavailable(error.message) from error
    buffer = settings.CONSOLE_BUFFER_BYTES
    try:
        return await connect(
            target.url,
            ssl=target.ssl,
            server_hostname=target.server_hostname,
            additional_headers=target.headers,
            subprotocols=[KUBEVIRT_SUBPROTOCOL],
            compression=None,
            proxy=None,
            open_timeout=settings.CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS,
            # Frames from the guest: the API server is trusted, but one frame is still capped.
            max_size=16 * 1024 * 1024,
            # Bounded in both directions: when the browser is slow the relay stops calling recv(),
            # these few frames fill up and websockets stops reading from the socket.
            max_queue=4,
            write_limit=buffer,
            user_agent_header="laborchestrator-console-proxy",
        )
    except InvalidStatus as error:
        status = error.response.status_code
        body = (error.response.body or b"")[:200].decode(errors="replace")
        if status == 400:
            raise UpstreamNotRunning(f"The machine is not running ({body.strip() or 'HTTP 400'}).") from error
        raise UpstreamUnavailable(f"The cluster refused the console (HTTP {status}).") from error
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
        raise UpstreamUnavailable(f"The cluster is unreachable ({type(error).__name__}).") from error
