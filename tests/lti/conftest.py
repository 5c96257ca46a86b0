"""Fixtures: the fake platform (fake_platform.py) served over HTTP on 127.0.0.1, its registration
with the tool, and a published lab with a four-step tutorial."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from labs.models import Lab, LabMachine, VMImage
from lti.models import Platform
from tests.lti.fake_platform import (
    CLIENT_ID,
    DEPLOYMENT_ID,
    ISSUER,
    FakePlatform,
    launch_claims,
    make_handler,
    start_login,
)
from tutorials.models import Step, Tutorial, TutorialPage


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    # pylti1p3 caches platform access tokens in Django's cache; each test starts without one.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fake_platform() -> Iterator[FakePlatform]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    platform = FakePlatform(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = make_handler(platform)
    # serve_forever notices shutdown() only between polls: at its default 0.5 s, tearing the server
    # down took most of this suite's time.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield platform
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def platform(db, fake_platform: FakePlatform) -> Platform:
    return Platform.objects.create(
        name="Moodle",
        issuer=ISSUER,
        client_id=CLIENT_ID,
        deployment_ids=DEPLOYMENT_ID,
        auth_login_url=f"{fake_platform.base_url}/auth",
        auth_token_url=f"{fake_platform.base_url}/token",
        keyset_url=f"{fake_platform.base_url}/jwks",
    )


@pytest.fixture
def lab(db) -> Lab:
    image = VMImage.objects.create(
        name="Demo", container_disk_image="localcluster/demo:latest", default_username="lab"
    )
    lab = Lab.objects.create(
        name="Explore the network", slug="explore", namespace_prefix="explore", published=True
    )
    LabMachine.objects.create(lab=lab, name="alpha", image=image, memory_mib=256, order=0)
    tutorial = Tutorial.objects.create(title="Networking basics", slug="networking", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="Addresses", body_markdown="Hello")
    for order in range(4):
        Step.objects.create(page=page, order=order, text_markdown=f"Step {order}")
    return lab


@pytest.fixture
def tutorial(lab: Lab) -> Tutorial:
    return Tutorial.objects.get(slug="networking")


@pytest.fixture
def do_launch(fake_platform: FakePlatform) -> Callable[..., Any]:
    """do_launch(client, claims=None, *, token=None, **claim_overrides): login, then post the id_token."""

    def run(
        client: Client,
        *,
        token: str | None = None,
        edit: Callable[[dict], None] | None = None,
        **overrides: Any,
    ):
        login = start_login(client)
        assert login.response.status_code == 302, login.response.content
        claims = launch_claims(login.nonce, **overrides)
        if edit is not None:
            edit(claims)
        id_token = token or fake_platform.sign(claims)
        response = client.post("/lti/launch/", {"state": login.state, "id_token": id_token})
        response.login = login
        response.id_token = id_token
        return response

    return run
