"""A real OCI registry on loopback: Debian's `docker-registry` (CNCF distribution) with a generated config.

    with run_registry(Path("/tmp/reg")) as registry:                      # anonymous
    with run_registry(Path("/tmp/reg"), users={"ann": "secret"}) as r:    # htpasswd basic auth
    with run_registry(Path("/tmp/reg"), users={...}, auth="token") as r:  # bearer tokens
        registry.host        # "127.0.0.1:PORT", for references
        registry.storage     # distribution's filesystem storage (tests corrupt blobs there)
        registry.push_layout(layout_dir, "demo/disk:1")

Basic auth is distribution's `htpasswd` (bcrypt entries written by apache2-utils' `htpasswd`). Token
auth needs a token server, which distribution does not ship: `TokenServer` below is the smallest one
its `auth.token` accepts (docs: distribution's docs/spec/auth/token.md and jwt.md): a GET with HTTP
basic credentials returns a JWT signed by a key whose self-signed certificate the registry trusts
(`rootcertbundle`), granting what the scope asks for to any known user (there are no per-user
grants here: it stands in for a real one in tests and `make run`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localcluster import tls
from localcluster.harness import die_with_parent
from localcluster.registry.pull import authfile_for, classify, skopeo_message
from localcluster.registry.reference import parse_reference
from localcluster.tls import TlsFiles

DOCKER_REGISTRY = "docker-registry"
HTPASSWD = "htpasswd"
SERVICE = "laborchestrator-registry"


class RegistryError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def dockerconfigjson(host: str, username: str, password: str) -> dict[str, Any]:
    """A pull Secret's `.dockerconfigjson` for one registry."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auths": {host: {"username": username, "password": password, "auth": auth}}}


# -- token server ---------------------------------------------------------------------------------------
def _signing_certificate(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "laborchestrator registry token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    bundle = folder / "token-ca.crt"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER), bundle


class TokenServer:
    """Issues registry bearer tokens to the users it knows (distribution's token auth protocol)."""

    def __init__(self, folder: Path, users: dict[str, str], issuer: str = "laborchestrator-token") -> None:
        self.users = dict(users)
        self.issuer = issuer
        self.key, self._cert_der, self.bundle = _signing_certificate(folder)
        self.requests: list[dict[str, Any]] = []  # who asked for what: tests check the scope flowed
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        known = self.users.get(username)
        return username if known is not None and secrets.compare_digest(known, password) else None

    def _answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(request.path).query)
        user = self._user(request.headers.get("Authorization"))
        self.requests.append({"user": user, "scope": query.get("scope", [])})
        if user is None:
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).encode()
            request.send_response(401)
        else:
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "sub": user,
                "aud": query.get("service", [SERVICE])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            headers = {"x5c": [base64.b64encode(self._cert_der).decode()]}
            token = jwt.encode(claims, self.key, algorithm="ES256", headers=headers)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


# -- the registry ---------------------------------------------------------------------------------------
@dataclass
class Registry:
    host: str
    storage: Path
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None
    tls: TlsFiles | None = None

    @property
    def ca_dir(self) -> Path | None:
        """A folder holding only the registry's CA certificate, as skopeo's --cert-dir wants it
        (every *.crt there is a CA; a *.key would ask for a client certificate)."""
        if self.tls is None:
            return None
        folder = self.tls.ca_cert.parent.parent / "ca"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(self.tls.ca_cert, folder / "ca.crt")
        return folder

    def credentials(self, username: str | None = None) -> dict[str, Any] | None:
        if not self.users:
            return None
        username = username or next(iter(self.users))
        return dockerconfigjson(self.host, username, self.users[username])

    def reference(self, name: str) -> str:
        return f"{self.host}/{name}"

    def push_layout(self, layout: Path, name: str, *, tag: str = "image", username: str | None = None) -> str:
        """Push the OCI layout's image `tag` as `name` (repository:tag); returns the pushed digest."""
        return push(f"oci:{layout}:{tag}", self.reference(name), credentials=self.credentials(username))

    def blob_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob (registry/storage/paths.go)."""
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


def push(
    source: str,
    destination: str,
    *,
    credentials: dict[str, Any] | None = None,
    timeout: float = 600,
    all_images: bool = False,
) -> str:
    """`skopeo copy SOURCE docker://DESTINATION` (HTTP allowed for loopback only); returns the digest.
    `all_images` pushes every image of an index (a manifest list), not only linux/amd64's."""
    ref = parse_reference(destination)
    with authfile_for(credentials) as authfile, tempfile.TemporaryDirectory(prefix="push-") as scratch:
        digest_file = Path(scratch) / "digest"
        command = [
            "skopeo",
            "--command-timeout",
            f"{int(timeout)}s",
            "--insecure-policy",  # pushing our own build: there is no signature policy to apply
            "copy",
            "--quiet",
            "--digestfile",
            str(digest_file),
            f"--dest-tls-verify={'false' if ref.is_loopback else 'true'}",
        ]
        if authfile is not None:
            command += ["--dest-authfile", str(authfile)]
        if all_images:
            command.append("--all")
        done = subprocess.run(  # noqa: S603
            [*command, source, f"docker://{ref}"], capture_output=True, check=False, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            message = skopeo_message(lines[-1] if lines else f"skopeo exited with {done.returncode}")
            raise classify(message)(message)
        return digest_file.read_text().strip()


def _htpasswd(path: Path, users: dict[str, str]) -> None:
    lines = []
    for username, password in users.items():
        try:
            done = subprocess.run(  # noqa: S603
                [HTPASSWD, "-nbB", username, password], capture_output=True, check=True, text=True
            )
        except FileNotFoundError as exc:
            raise RegistryError("htpasswd is not installed (Debian package apache2-utils)") from exc
        lines.append(done.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def registry_config(
    folder: Path,
    port: int,
    *,
    users: dict[str, str],
    auth: str,
    token_server: TokenServer | None,
    tls: TlsFiles | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
    if auth == "htpasswd":
        _htpasswd(folder / "htpasswd", users)
        config["auth"] = {"htpasswd": {"realm": SERVICE, "path": str(folder / "htpasswd")}}
    elif auth == "token":
        assert token_server is not None
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": SERVICE,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.bundle),
            }
        }
    return config


def _wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 15, ca: Path | None = None
) -> None:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RegistryError(
                f"docker-registry exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            urllib.request.urlopen(url, timeout=1, context=context).close()  # noqa: S310 (an http URL we built)
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    raise RegistryError(f"docker-registry did not answer on {url} in {timeout:.0f} s")


@contextlib.contextmanager
def run_registry(
    folder: Path,
    *,
    users: dict[str, str] | None = None,
    auth: str | None = None,
    port: int = 0,
    https: bool = False,
) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1 until the block ends. `auth`: None, "htpasswd" or "token"
    (with `users`, htpasswd is the default). `https`: served with a certificate from a CA of its
    own (`Registry.ca_dir` holds the CA, as skopeo's --cert-dir wants it)."""
    if shutil.which(DOCKER_REGISTRY) is None:
        raise RegistryError("docker-registry is not installed (Debian package docker-registry)")
    users = dict(users or {})
    auth = auth or ("htpasswd" if users else None)
    if auth and not users:
        raise RegistryError(f"{auth} auth needs users")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token_server = TokenServer(folder, users) if auth == "token" else None
    if https:
        (folder / "tls").mkdir(exist_ok=True)
    tls_files = tls.generate(folder / "tls") if https else None
    config_file = folder / "config.yml"
    # JSON is YAML: distribution reads it as its config.
    config_file.write_text(
        json.dumps(
            registry_config(
                folder, port, users=users, auth=auth or "", token_server=token_server, tls=tls_files
            )
        )
    )
    log = folder / "registry.log"
    with contextlib.ExitStack() as stack:
        if token_server is not None:
            token_server.start()
            stack.callback(token_server.stop)
        with log.open("wb") as log_handle:
            process = subprocess.Popen(  # noqa: S603
                [DOCKER_REGISTRY, "serve", str(config_file)],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
                start_new_session=True,  # not the terminal's Ctrl-C: its owner stops it, in order
                preexec_fn=die_with_parent,
            )
        try:
            scheme = "https" if tls_files else "http"
            _wait_ready(
                process, f"{scheme}://127.0.0.1:{port}/v2/", log, ca=tls_files.ca_cert if tls_files else None
            )
            yield Registry(f"127.0.0.1:{port}", folder / "storage", users, token_server, tls_files)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
