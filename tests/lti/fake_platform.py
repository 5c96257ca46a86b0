"""A fake LTI platform for the tests: its RSA key, its keyset, token and score endpoints served over
real HTTP on 127.0.0.1, and helpers that drive a browser (the Django test client) through the OIDC
login and the launch with an id_token the platform signs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client
from jwcrypto.jwk import JWK

ISSUER = "https://moodle.example.org"
CLIENT_ID = "lab-orchestrator-client"
DEPLOYMENT_ID = "1"
PLATFORM_KID = "moodle-key-1"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LEARNER = LIS + "membership#Learner"
INSTRUCTOR = LIS + "membership#Instructor"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {name: values[0] for name, values in parse_qs(self.body.decode()).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakePlatform:
    """The platform's side. `responses[path]` lists statuses to answer in turn (then 200)."""

    base_url: str
    key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    requests: list[Recorded] = field(default_factory=list)
    responses: dict[str, list[int]] = field(default_factory=dict)
    tokens_issued: int = 0

    @property
    def issuer(self) -> str:
        return ISSUER

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(JWK.from_pem(public_pem(self.key).encode()).export_public())
        jwk.update(kid=PLATFORM_KID, alg="RS256", use="sig")
        return {"keys": [jwk]}

    def sign(
        self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = PLATFORM_KID
    ) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    def received(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path == path]


def make_handler(platform: FakePlatform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, path: str) -> int:
            queue = platform.responses.get(path)
            return queue.pop(0) if queue else 200

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            platform.requests.append(Recorded("GET", path, dict(self.headers), b""))
            if path == "/jwks":
                self._answer(self._status(path), platform.jwks())
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            platform.requests.append(Recorded("POST", path, dict(self.headers), body))
            status = self._status(path)
            if status != 200:
                self._answer(status, {"error": "unavailable"})
            elif path == "/token":
                platform.tokens_issued += 1
                token = f"access-{platform.tokens_issued}"
                self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            elif path.endswith("/scores"):
                self._answer(200, {})
            else:
                self._answer(404, {})

    return Handler


def launch_claims(
    nonce: str, *, sub: str = "moodle-user-7", roles: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": sub,
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "email": "ada@uni.example",
        CLAIM + "message_type": "LtiResourceLinkRequest",
        CLAIM + "version": "1.3.0",
        CLAIM + "deployment_id": DEPLOYMENT_ID,
        CLAIM + "target_link_uri": "http://localhost:8000/lti/launch/",
        CLAIM + "resource_link": {"id": "rl-42", "title": "Week 3 lab"},
        CLAIM + "roles": roles if roles is not None else [LEARNER],
        CLAIM + "context": {"id": "course-3", "title": "Networks 101"},
        CLAIM + "custom": {"lab": "explore"},
    }
    claims.update(extra)
    return claims


@dataclass
class Login:
    """The platform's view of one OIDC login started by the tool."""

    response: Any
    params: dict[str, str]

    @property
    def state(self) -> str:
        return self.params["state"]

    @property
    def nonce(self) -> str:
        return self.params["nonce"]


def start_login(client: Client, *, method: str = "get", **overrides: str) -> Login:
    data = {
        "iss": ISSUER,
        "login_hint": "7",
        "target_link_uri": "http://localhost:8000/lti/launch/",
        "lti_message_hint": "hint-123",
        "client_id": CLIENT_ID,
        "lti_deployment_id": DEPLOYMENT_ID,
        **overrides,
    }
    response = getattr(client, method)("/lti/login/", data)
    params = {}
    if response.status_code == 302:
        params = {name: values[0] for name, values in parse_qs(urlparse(response["Location"]).query).items()}
    return Login(response=response, params=params)
