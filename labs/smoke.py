"""Smoke test of a cluster through the application's own code: does a lab really run there?

    python -m labs.smoke --kubeconfig ~/.kube/config [--context NAME]   # a real cluster with KubeVirt
    python -m labs.smoke                                                # none at hand: a local cluster

In a temporary directory it makes a throw-away installation (its own SQLite database, its own
installation id `smoke-<random>`, a student and a one-machine lab), serves it with the app server
as production does (`laborchestrator.serve`, with the status watcher `manage.py watch_cluster`), and
then, as the student, through the REST API and
the console websocket:

1. starts the lab and waits until its machine runs and is ready;
2. opens the machine's serial console through the relay (the app server, the Channels consumer, the
   cluster's `console` subresource) and waits for bytes from the guest;
3. pauses the lab until the cluster confirms it, then resumes it likewise;
4. stops it and waits until the namespace is gone (404);
5. checks that nothing is left: every namespaced kind the API server lists (discovery) is empty in
   that namespace, and no namespace carries the smoke's installation label.

Exit status 0 when every step passed; 1 with the failed step's reason otherwise (after stopping the
lab). The cluster calls use the kubeconfig's context (`--context`, like KUBE_CONTEXT); the leftover
check may use another one (`--check-context`), since the application's own role may not read
everything. Without `--kubeconfig` it starts a local cluster (`--runtime none` by default, or `qemu`
with the demo image from `python -m localcluster build-image`) and checks as its administrator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# A containerDisk that exists on quay.io: KubeVirt publishes this demo image with every release.
CIRROS_IMAGE = "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0"
CIRROS_USER = "cirros"
# What the local cluster's qemu runtime boots (`python -m localcluster build-image`).
LOCAL_DEMO_IMAGE = "localcluster/demo:latest"
LOCAL_IMAGES = Path(__file__).resolve().parent.parent / "var" / "localcluster" / "images"
MACHINE = "vm"
INSTALLATION_LABEL = "laborchestrator/installation"  # labs.manifests.INSTALLATION_LABEL (no Django yet)
POLL_SECONDS = 0.5

T = TypeVar("T")


class SmokeFailed(Exception):
    """A step did not do what it should; the message says what was seen."""


@dataclass(frozen=True)
class Target:
    """The cluster under test and how to reach it."""

    kubeconfig: str
    context: str
    check_context: str
    image: str
    username: str


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


# --- The throw-away installation ----------------------------------------------------------------------


def installation_env(workdir: Path, target: Target, installation: str) -> dict[str, str]:
    """Settings of the smoke's own installation, for this process and its app server (never the caller's
    database: DATABASE_URL is always the temporary SQLite file)."""
    return {
        "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'smoke.sqlite3'}",
        "LABORCHESTRATOR_VAR_DIR": str(workdir),
        "LABORCHESTRATOR_PRODUCTION": "0",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "KUBECONFIG": target.kubeconfig,
        "KUBE_CONTEXT": target.context,
        "KUBE_IN_CLUSTER": "0",
        "INSTALLATION_ID": installation,
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
    }


def prepare_database(target: Target, namespace_prefix: str) -> tuple[str, str, str]:
    """Migrate, then a student and a published one-machine lab; returns (user, password, lab slug)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from labs.models import Lab, LabMachine, VMImage

    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(18)
    get_user_model().objects.create_user(username="smoke", password=password)
    image = VMImage.objects.create(
        name="Smoke test image",
        container_disk_image=target.image,
        default_username=target.username,
        has_vnc=True,
        has_serial_console=True,
    )
    lab = Lab.objects.create(
        name="Smoke test",
        slug="smoke-test",
        namespace_prefix=namespace_prefix,
        published=True,
        lifetime_minutes=60,
        idle_timeout_minutes=0,
    )
    LabMachine.objects.create(lab=lab, name=MACHINE, image=image, cores=1, memory_mib=256)
    return "smoke", password, lab.slug


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(env: dict[str, str], log_file: Path) -> Iterator[str]:
    """The installation under the app server, as deployed (`laborchestrator.serve`), with its status
    watcher (`manage.py watch_cluster`: pages read the status it writes); yields the server's URL."""
    port = free_port()
    args = [sys.executable, "-m", "laborchestrator.serve", "--host", "127.0.0.1", "--port", str(port)]
    watcher_args = [sys.executable, "manage.py", "watch_cluster"]
    repo = Path(__file__).resolve().parent.parent
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.getenv("PYTHONPATH")])),
    }
    processes: list[subprocess.Popen] = []
    with open(log_file, "wb") as log, open(log_file.with_name("watcher.log"), "wb") as watcher_log:
        process = subprocess.Popen(args, cwd=repo, env=full_env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        processes.append(process)
        watcher = subprocess.Popen(  # noqa: S603
            watcher_args, cwd=repo, env=full_env, stdout=watcher_log, stderr=subprocess.STDOUT
        )
        processes.append(watcher)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SmokeFailed(f"the app server did not start: {log_file.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        for running in processes:
            running.terminate()
        for running in processes:
            try:
                running.wait(timeout=10)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait()


# --- The student's side: REST API and console websocket ---------------------------------------------


class Api:
    """The REST API as a script uses it: JSON over HTTP with a bearer token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.token = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        # Our own server on the loopback interface.
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def expect(
        self, method: str, path: str, codes: tuple[int, ...], body: dict[str, Any] | None = None
    ) -> Any:
        status, answer = self.call(method, path, body)
        if status not in codes:
            raise SmokeFailed(f"{method} {path} answered {status}: {answer}")
        return answer

    def sign_in(self, username: str, password: str) -> None:
        answer = self.expect("POST", "/api/auth/token/", (200,), {"username": username, "password": password})
        self.token = answer["access"]


def wait_until(what: str, timeout: float, check: Callable[[], T | None]) -> T:
    """Call `check` every POLL_SECONDS until it returns something; SmokeFailed after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise SmokeFailed(f"{what}: not within {timeout:g} seconds")
        time.sleep(POLL_SECONDS)


def instance_in(api: Api, url: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    detail = api.expect("GET", url, (200,))
    if detail["status"] == "failed":
        raise SmokeFailed(f"the instance failed: {detail['last_error']}")
    if detail.get("last_error") and not detail.get("pending_action"):
        raise SmokeFailed(f"the instance reports: {detail['last_error']}")
    return detail if predicate(detail) else None


def read_serial_console(websocket_url: str, origin: str, timeout: float) -> bytes:
    """Open the console websocket as the browser's terminal does, press Enter until the guest
    answers, and return what it sent."""
    import asyncio

    import websockets

    async def read() -> bytes:
        async with websockets.connect(
            websocket_url, origin=origin, subprotocols=["binary"], open_timeout=30, max_size=None
        ) as websocket:
            received = b""
            deadline = time.monotonic() + timeout
            while not received.strip() and time.monotonic() < deadline:
                await websocket.send(b"\r")
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(websocket.recv(), timeout=2)
                    received += message if isinstance(message, bytes) else message.encode()
            return received

    try:
        return asyncio.run(read())
    except (OSError, websockets.WebSocketException) as error:
        raise SmokeFailed(f"the console websocket failed: {error}") from error


# --- What the cluster has left ----------------------------------------------------------------------


def _get_json(api_client: Any, path: str) -> tuple[int, Any]:
    method, url, headers, body, post_params = api_client.param_serialize(
        method="GET",
        resource_path=path,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(method, url, header_params=headers, body=body, post_params=post_params)
    response.read()
    try:
        return response.status, json.loads(response.data or b"null")
    except ValueError:
        return response.status, None


def leftovers(api_client: Any, namespace: str, installation: str) -> tuple[list[str], list[str], int]:
    """What is left of the instance: (objects found, kinds that could not be checked, kinds checked).

    The namespace itself; everything of every namespaced kind the server lists in discovery; and any
    namespace with the smoke's installation label. The RoleBinding, quota, Secrets, VMIs and their
    launcher pods are all such kinds.
    """
    found, unchecked, checked = [], [], 0
    status, body = _get_json(api_client, f"/api/v1/namespaces/{namespace}")
    if status != 404:
        phase = (body or {}).get("status", {}).get("phase", "?") if status == 200 else f"HTTP {status}"
        found.append(f"namespace {namespace} ({phase})")
    status, body = _get_json(
        api_client, f"/api/v1/namespaces?labelSelector={INSTALLATION_LABEL}%3D{installation}"
    )
    if status == 200:
        found += [f"namespace {item['metadata']['name']}" for item in body.get("items") or []]
    else:
        unchecked.append(f"namespaces labelled {INSTALLATION_LABEL}={installation} (HTTP {status})")
    prefixes = ["/api/v1"]
    status, groups = _get_json(api_client, "/apis")
    for group in (groups or {}).get("groups") or []:
        prefixes.append(f"/apis/{group['preferredVersion']['groupVersion']}")
    for prefix in prefixes:
        status, resources = _get_json(api_client, prefix)
        for resource in (resources or {}).get("resources") or []:
            name = resource["name"]
            if not resource.get("namespaced") or "/" in name or "list" not in (resource.get("verbs") or []):
                continue
            status, listed = _get_json(api_client, f"{prefix}/namespaces/{namespace}/{name}")
            if status == 200:
                checked += 1
                found += [f"{name} {item['metadata']['name']}" for item in (listed or {}).get("items") or []]
            elif status == 404:
                checked += 1  # some servers answer 404 for a list in a namespace that is gone
            else:
                unchecked.append(f"{prefix}/{name} (HTTP {status})")
    return found, unchecked, checked


# --- The run ----------------------------------------------------------------------------------------

_ENDED = ("stopped", "expired")


def _running_and_ready(detail: dict[str, Any]) -> bool:
    machines = detail["machines"]
    return detail["status"] == "running" and all(m["phase"] == "Running" and m["ready"] for m in machines)


def _stopped(detail: dict[str, Any]) -> bool:
    return detail["status"] in _ENDED


def _namespace_of(instance_id: int) -> str:
    """The instance's namespace, from the installation's database (the API does not show it)."""
    from labs.models import LabInstance

    return LabInstance.objects.get(pk=instance_id).namespace or ""


@contextlib.contextmanager
def _quiet_if(earlier_failure: bool) -> Iterator[None]:
    """After an earlier failure, a failed leftover check is reported (by `step`) but not raised again."""
    try:
        yield
    except SmokeFailed:
        if not earlier_failure:
            raise


class Run:
    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.failures: list[str] = []

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        say(f"… {title}")
        began = time.monotonic()
        try:
            yield
        except SmokeFailed as failure:
            say(f"FAILED {title}: {failure}")
            self.failures.append(f"{title}: {failure}")
            raise
        say(f"ok {title} ({time.monotonic() - began:.1f} s)")

    def run(self, workdir: Path) -> bool:
        installation = f"smoke-{secrets.token_hex(4)}"
        prefix = f"smoke-{secrets.token_hex(3)}"
        env = installation_env(workdir, self.target, installation)
        os.environ.update(env)
        say(f"installation {installation}, lab namespace prefix {prefix}, image {self.target.image}")
        username, password, lab_slug = prepare_database(self.target, prefix)
        log_file = workdir / "app-server.log"
        try:
            with serve_app(env, log_file) as base_url:
                self._as_student(Api(base_url), username, password, lab_slug, installation)
        except SmokeFailed:
            if log_file.exists() and log_file.read_text().strip():
                say("the app's log:\n" + log_file.read_text()[-4000:])
            return False
        return True

    def _as_student(self, api: Api, username: str, password: str, lab_slug: str, installation: str) -> None:
        api.sign_in(username, password)
        instance_id: int | None = None
        stopped = False
        try:
            with self.step("start the lab"):
                instance_id = api.expect("POST", "/api/instances/", (201,), {"lab": lab_slug})["id"]
            url = f"/api/instances/{instance_id}/"
            with self.step("wait until its machine runs"):
                wait_until("running", self.timeout, lambda: instance_in(api, url, _running_and_ready))
            with self.step("read its serial console through the relay"):
                ticket = api.expect("POST", f"{url}machines/{MACHINE}/ticket/", (201,), {"kind": "serial"})
                received = read_serial_console(ticket["websocket_url"], api.base_url, min(self.timeout, 120))
                if not received.strip():
                    raise SmokeFailed("no bytes from the guest")
                say(f"   the guest said {received[-200:]!r}")
            self._pause_and_resume(api, url)
            with self.step("stop it and wait until its namespace is gone"):
                api.expect("DELETE", url, (200, 202))
                wait_until("stopped", self.timeout, lambda: instance_in(api, url, _stopped))
                stopped = True
        finally:
            if instance_id is not None:
                if not stopped:
                    self._stop_after_failure(api, f"/api/instances/{instance_id}/")
                with _quiet_if(not stopped), self.step("check that nothing is left"):
                    self._check_nothing_left(_namespace_of(instance_id), installation)

    def _pause_and_resume(self, api: Api, url: str) -> None:
        with self.step("pause it until the cluster confirms"):
            api.expect("POST", f"{url}pause/", (200,))
            paused = wait_until(
                "paused",
                self.timeout,
                lambda: instance_in(
                    api,
                    url,
                    lambda d: (
                        d["status"] == "paused"
                        and not d["pending_action"]
                        and all(m["paused"] for m in d["machines"])
                    ),
                ),
            )
            # KubeVirt turns Ready False while paused (the launcher pod's readiness gate), a moment
            # after the Paused condition: shown, not required.
            say(f"   ready while paused: {[m['ready'] for m in paused['machines']]}")
        with self.step("resume it until the cluster confirms"):
            wait_until("resume accepted", self.timeout, lambda: self._resume(api, url))
            wait_until(
                "running again",
                self.timeout,
                lambda: instance_in(
                    api,
                    url,
                    lambda d: (
                        d["status"] == "running"
                        and not d["pending_action"]
                        and not any(m["paused"] for m in d["machines"])
                    ),
                ),
            )

    @staticmethod
    def _resume(api: Api, url: str) -> bool | None:
        status, answer = api.call("POST", f"{url}resume/")
        if status == 200:
            return True
        if status == 409 and "still pausing" in str(answer):
            return None  # the cluster has not confirmed the pause yet: try again
        raise SmokeFailed(f"POST {url}resume/ answered {status}: {answer}")

    def _stop_after_failure(self, api: Api, url: str) -> None:
        say("stopping the lab after the failure")
        try:
            api.expect("DELETE", url, (200, 202))
            wait_until(
                "stopped", self.timeout, lambda: api.expect("GET", url, (200,))["status"] in _ENDED or None
            )
        except SmokeFailed as failure:
            say(f"   could not stop it: {failure}")

    def _check_nothing_left(self, namespace: str, installation: str) -> None:
        from kubernetes import config

        api_client = config.new_client_from_config(
            config_file=self.target.kubeconfig, context=self.target.check_context or None
        )
        try:
            found, unchecked, checked = leftovers(api_client, namespace, installation)
        finally:
            api_client.close()
        say(f"   {checked} namespaced kinds listed in {namespace}")
        for kind in unchecked:
            say(f"   not checked (the {self.target.check_context!r} context may not read it): {kind}")
        if found:
            raise SmokeFailed("left in the cluster: " + ", ".join(found))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labs.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="the cluster to test; without it, a local cluster is started")
    parser.add_argument("--context", default="", help="kubeconfig context the app uses (default: current)")
    parser.add_argument(
        "--check-context", default="", help="context for the leftover check (default: --context)"
    )
    parser.add_argument("--image", help=f"containerDisk of the lab's machine (default {CIRROS_IMAGE})")
    parser.add_argument("--username", help=f"the image's login user (default {CIRROS_USER})")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each step may take (default 600)")
    parser.add_argument(
        "--runtime", choices=("none", "qemu"), default="none", help="local cluster only: what runs the VM"
    )
    parser.add_argument(
        "--images", type=Path, default=LOCAL_IMAGES, help="local cluster only, qemu: image store"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (database, the app server's log)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="laborchestrator-smoke-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.kubeconfig:
                target = Target(
                    kubeconfig=str(Path(args.kubeconfig).expanduser()),
                    context=args.context,
                    check_context=args.check_context or args.context,
                    image=args.image or CIRROS_IMAGE,
                    username=args.username or CIRROS_USER,
                )
            else:
                from localcluster.harness import start_local_cluster

                images = args.images if args.runtime == "qemu" else None
                cluster = stack.enter_context(
                    start_local_cluster(workdir / "cluster", runtime=args.runtime, images=images)
                )
                say(f"no --kubeconfig: a local cluster (runtime {args.runtime}) at {cluster.url}")
                default_image = LOCAL_DEMO_IMAGE if args.runtime == "qemu" else CIRROS_IMAGE
                target = Target(
                    kubeconfig=cluster.kubeconfig,
                    context=args.context or "laborchestrator",
                    check_context=args.check_context or "admin",
                    image=args.image or default_image,
                    username=args.username or (CIRROS_USER if args.runtime == "none" else "lab"),
                )
            run = Run(target, args.timeout)
            passed = run.run(workdir)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say("PASSED" if passed else f"FAILED: {run.failures[-1] if run.failures else 'see above'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
