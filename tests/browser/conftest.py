"""Browser tests: Debian's Chromium, driven by Playwright, against the app under the real app server
process (uvicorn, as deployed) talking to the local cluster.

The cluster runs real QEMU VMs (runtime `qemu`, the demo and desktop images) when QEMU and its helpers are
installed, as in CI; otherwise the `none` runtime (fake guests: a console banner and echo, a tiny
RFB server) still exercises the whole UI. BROWSER_TEST_RUNTIME=none|qemu forces one.
Never `playwright install`: the browser is /usr/bin/chromium (`apt-get install chromium`).

Two small HTTP servers play the sites that frame the embed views: one on another port of 127.0.0.1
(same site: the session cookie goes along) and one on 127.0.0.2 (another site: it does not).
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import html
import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from django.conf import settings as django_settings

from localcluster.containers import toolsimage
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_containers.container_helpers import missing as missing_container_tools
from tests.vncproxy.app_server import (
    ServerProcess,
    database_url,
    run_app_server,
    run_status_watcher,
    use_file_sqlite_test_database,
)

# Collected before any test runs, so before the test database is created: the server must see its rows.
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"browser-test-{os.getpid()}.sqlite3")

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QEMU_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "busybox": "busybox-static",
    "vde_switch": "vde2",
    "genisoimage": "genisoimage",
    "dnsmasq": "dnsmasq-base",
    "ip": "iproute2",
}
PASSWORD = "pw-browser-1"


@dataclass(frozen=True)
class Server:
    """The app under its server, and the two sites that frame it."""

    url: str  # http://127.0.0.1:<port>
    process: ServerProcess
    runtime: str
    framing_site: str  # same site, allowed to frame
    foreign_site: str  # same site, not allowed to frame
    cross_site: str  # another site (127.0.0.2), allowed to frame
    log: Path


def browser_runtime() -> str:
    forced = os.environ.get("BROWSER_TEST_RUNTIME")
    if forced in ("none", "qemu"):
        return forced
    if os.environ.get("LABORCHESTRATOR_REQUIRE_ALL_TESTS") == "1":
        return "qemu"
    return "qemu" if all(shutil.which(tool) for tool in QEMU_TOOLS) else "none"


@pytest.fixture(scope="session")
def browser_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, str]]:
    runtime = browser_runtime()
    state = tmp_path_factory.mktemp("browser-cluster")
    # The tools container image for container machines, where this machine can run containers.
    containers: tuple[str, ...] = ()
    if missing_container_tools() is None:
        images = tmp_path_factory.mktemp("browser-container-images")
        toolsimage.build(images, tag="1")
        containers = ("--container-images", str(images))
    if runtime == "qemu":
        for executable, package in QEMU_TOOLS.items():
            require_tool(executable, package)
        from tests.localcluster_qemu.qemu_helpers import desktop_images

        with start_local_cluster(
            state, runtime="qemu", images=desktop_images(), extra_args=containers
        ) as cluster:
            yield cluster, runtime
    else:
        # Phases a little apart, so the page shows the machines waiting, scheduled, booting.
        args = ("--phase-delay-ms", "400", "--finalize-delay-ms", "200", *containers)
        with start_local_cluster(state, runtime="none", extra_args=args) as cluster:
            yield cluster, runtime


class FramingPage(http.server.BaseHTTPRequestHandler):
    """`/?src=<url>`: a page of another site with the URL in an iframe, as a Moodle course shows it."""

    def do_GET(self) -> None:
        src = parse_qs(urlparse(self.path).query).get("src", ["about:blank"])[0]
        body = (
            "<!doctype html><title>Course page</title><h1>Course page</h1>"
            f'<iframe src="{html.escape(src)}" width="1000" height="640" title="Lab"></iframe>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def framing_sites() -> Iterator[dict[str, str]]:
    servers = {}
    for name, host in (("framing", "127.0.0.1"), ("foreign", "127.0.0.1"), ("cross", "127.0.0.2")):
        server = http.server.ThreadingHTTPServer((host, 0), FramingPage)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield {name: f"http://{s.server_address[0]}:{s.server_address[1]}" for name, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def server(
    django_db_setup, django_db_blocker, browser_cluster, framing_sites, tmp_path_factory
) -> Iterator[Server]:
    cluster, runtime = browser_cluster
    with django_db_blocker.unblock():
        url = database_url()
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DEBUG": "1",
        "FAST_PASSWORD_HASHING": "1",
        "KUBECONFIG": str(cluster.kubeconfig),
        "KUBE_CONTEXT": "laborchestrator",
        "EMBED_ALLOWED_ORIGINS": f"{framing_sites['framing']},{framing_sites['cross']}",
        "LOG_LEVEL": "INFO",
        # Fixed, as the suite's own (tests/conftest.py): the tests here flush the database after each
        # one, which would take a generated id (labs_installation) with it, and the status watcher,
        # started once, would go on watching the first id's labels.
        "INSTALLATION_ID": "test-suite",
    }
    log = tmp_path_factory.mktemp("server") / "server.log"
    with run_status_watcher(env, log.with_name("watcher.log")), run_app_server(env, log) as process:
        yield Server(
            url=f"http://{process.address}",
            process=process,
            runtime=runtime,
            framing_site=framing_sites["framing"],
            foreign_site=framing_sites["foreign"],
            cross_site=framing_sites["cross"],
            log=log,
        )


@pytest.fixture(scope="module")
def chromium(server) -> Iterator:
    require_tool(CHROMIUM, "chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop marked running in this thread, and Django refuses
    # ORM calls then; the tests' own ORM calls are plain synchronous code, so allow them while the
    # browser is up (module scope: the rest of the suite keeps Django's check).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, server) -> Iterator:
    context = chromium.new_context(viewport={"width": 1366, "height": 820})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.page_errors = errors
    yield page
    context.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # Users made here must be readable by the server process (FAST_PASSWORD_HASHING=1 there).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take


def sign_in(page, server: Server, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{server.url}/accounts/login/")
    page.get_by_label("User name or e-mail").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/")
