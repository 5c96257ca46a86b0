"""Start a local cluster in a subprocess and drive it: kubeconfig clients, faults, the call log.

Used by the pytest plugin (`local_cluster` fixture) and by anything else that needs a cluster for a
while (benchmarks, `make run`):

    with start_local_cluster(Path("var/cluster")) as cluster:
        api = kubernetes.client.CoreV1Api(cluster.api_client())
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# ssl, urllib.request and yaml are imported where they are used: only the fault API and the kubeconfig
# readers need them, and a caller that just starts a cluster should not wait for them (~50 ms).
if TYPE_CHECKING:
    import ssl

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "localcluster listening on "
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Between fork and exec: the child gets SIGTERM when its parent dies, however it dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


START_TIMEOUT = 15.0


class FaultControl:
    """Client of the server's admin-only control API (`/localcluster/v1/...`)."""

    def __init__(self, url: str, token: str, ca_file: Path) -> None:
        import ssl

        self._url = url.rstrip("/") + "/localcluster/v1/"
        self._token = token
        self._ssl = ssl.create_default_context(cafile=str(ca_file))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        # The URL is always our own https server's.
        request = urllib.request.Request(self._url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=10) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"localcluster control API {method} {path}: {exc.code} {exc.read()!r}"
            ) from exc

    def latency(self, ms: float, jitter_ms: float = 0) -> None:
        """Every API request waits `ms` ± `jitter_ms` milliseconds before it is served."""
        self._call("PUT", "faults/latency", {"ms": ms, "jitter_ms": jitter_ms})

    def fail(self, verb: str, resource: str, status: int = 500, times: int | None = 1) -> None:
        """The next `times` (None: every) `verb` on `resource` answer `status`, changing nothing."""
        self._call(
            "POST", "faults/fail", {"verb": verb, "resource": resource, "status": status, "times": times}
        )

    def hang(self, verb: str, resource: str, seconds: float, times: int | None = 1) -> None:
        """The next `times` matching requests wait `seconds`, then are served normally."""
        self._call(
            "POST", "faults/hang", {"verb": verb, "resource": resource, "seconds": seconds, "times": times}
        )

    def late_commit(self, verb: str, resource: str, seconds: float, times: int | None = 1) -> None:
        """The next `times` matching requests are carried out after `seconds`, even if the client has
        given up meanwhile: a create times out on the client and its object appears later."""
        self._call(
            "POST",
            "faults/late-commit",
            {"verb": verb, "resource": resource, "seconds": seconds, "times": times},
        )

    def drop_watch(self, resource: str, after_events: int = 0) -> None:
        """The next watch on `resource` is cut (no clean end) after `after_events` events."""
        self._call("POST", "faults/drop-watch", {"resource": resource, "after_events": after_events})

    def drop_websocket(self, kind: str = "console", after_bytes: int = 0) -> None:
        """The next `kind` ("console"/"vnc"/"portforward") websocket is cut after `after_bytes` bytes
        from the guest."""
        self._call("POST", "faults/drop-websocket", {"kind": kind, "after_bytes": after_bytes})

    def missing_image(self, image: str) -> None:
        """Pulling `image` fails as from a registry that does not have it (ErrImagePull)."""
        self._call("POST", "faults/missing-image", {"image": image})

    def node(self, memory: str | None = None, cpu: str | None = None) -> None:
        """The node's allocatable memory and/or CPU: launcher pods that do not fit stay unschedulable."""
        spec = {k: v for k, v in (("memory", memory), ("cpu", cpu)) if v is not None}
        self._call("POST", "faults/node", spec)

    def fail_vmi(self, namespace: str, name: str, message: str = "the guest crashed") -> None:
        """The running VMI's guest dies now: its phase becomes Failed, its console a 409."""
        self._call("POST", "faults/fail-vmi", {"namespace": namespace, "name": name, "message": message})

    def slow_pause_condition(self, ms: float) -> None:
        """A VMI's Paused condition follows a pause or unpause `ms` milliseconds after the answer."""
        self._call("PUT", "faults/pause-condition-delay", {"ms": ms})

    def clear(self) -> None:
        self._call("DELETE", "faults")

    def describe(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def calls(self) -> list[dict[str, Any]]:
        """API requests served since the last reset.

        Each is {verb, resource, namespace, name, subresource, status}.
        """
        return self._call("GET", "calls")

    def reset_calls(self) -> None:
        self._call("DELETE", "calls")


@dataclass
class LocalCluster:
    url: str
    kubeconfig: str
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @functools.cached_property
    def faults(self) -> FaultControl:
        # Made on first use, not when the cluster is ready: reading the admin token (yaml) and loading
        # the CA into an SSL context would otherwise add to every start.
        return FaultControl(self.url, self.token("admin"), self.ca_file)

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.crt"

    def token(self, identity: str = "laborchestrator") -> str:
        import yaml

        with open(self.kubeconfig) as f:
            config = yaml.safe_load(f)
        for user in config["users"]:
            if user["name"] == identity:
                return str(user["user"]["token"])
        raise KeyError(f"no identity {identity!r} in {self.kubeconfig}")

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server against the cluster's CA, e.g. for `websockets.connect(ssl=...)`."""
        import ssl

        return ssl.create_default_context(cafile=str(self.ca_file))

    def api_client(self, identity: str = "laborchestrator") -> Any:
        """A `kubernetes.client.ApiClient` from the kubeconfig's `identity` context."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, context=identity)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_ready(process: subprocess.Popen[bytes], log_file: Path) -> str:
    """Read the server's stdout until its ready line; return the URL."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].split()[0]
    finally:
        selector.close()
    process.kill()
    process.wait()
    log = log_file.read_text() if log_file.exists() else ""
    raise RuntimeError(
        f"localcluster did not start (exit code {process.returncode}): {buffer.decode()}\n{log}"
    )


@contextlib.contextmanager
def start_local_cluster(
    state_dir: Path | str,
    runtime: str = "none",
    images: Path | str | None = None,
    extra_args: Sequence[str] = (),
    own_session: bool = False,
) -> Iterator[LocalCluster]:
    """Run `python -m localcluster` until the block ends; the server's log goes to state_dir/server.log.

    `own_session`: the server does not get the terminal's Ctrl-C (so its owner can stop what runs
    on it first, as `make run` does), and dies with its owner all the same.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "localcluster",
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
        "--runtime",
        runtime,
    ]
    if images is not None:
        args += ["--images", str(images)]
    args += list(extra_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # aiohttp builds default *client* SSL contexts at import, loading the system CA bundle: ~0.1-0.2 s
    # of every test session's start. The server makes no outbound TLS connections, so skip the bundle.
    env["SSL_CERT_FILE"] = os.devnull
    log_file = state_dir / "server.log"
    with open(log_file, "wb") as log:
        session = {"start_new_session": True, "preexec_fn": die_with_parent} if own_session else {}
        process = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT, env=env, **session
        )
    cluster: LocalCluster | None = None
    try:
        url = _wait_ready(process, log_file)
        cluster = LocalCluster(
            url=url, kubeconfig=str(state_dir / "kubeconfig"), state_dir=state_dir, process=process
        )
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        elif process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
