"""The app's one conversation with container registries: does a VM image's reference resolve, and to
which digest. Through Debian's `skopeo` (containers/image), with a short timeout: the admin form
asks it while an instructor waits, and only warns on failure (a registry may be down for a moment,
or reachable from the cluster only).

What a reference may name is checked here too: a registry host is required (a bare `name:tag`
resolves to docker.io on every cluster, a registry nobody here controls), and the host must resolve.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

INSPECT_TIMEOUT_SECONDS = 8
SKOPEO = "skopeo"


class RegistryCheckFailed(Exception):
    """The reference could not be resolved now; the message is skopeo's (or why it did not run)."""


def registry_host(reference: str) -> str | None:
    """The registry host:port a reference names, or None when it names none (docker.io implied)."""
    first, slash, _ = reference.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return None
    return first


def host_resolves(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    try:
        socket.getaddrinfo(name, None)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def dockerconfigjson(host: str, username: str, password: str) -> dict[str, Any]:
    """A kubernetes.io/dockerconfigjson Secret's `.dockerconfigjson` for one registry."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auths": {host: {"username": username, "password": password, "auth": auth}}}


@contextlib.contextmanager
def _authfile(credentials: dict[str, Any] | None) -> Iterator[str | None]:
    if credentials is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="auth-", suffix=".json")  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(credentials, handle)
        yield name
    finally:
        os.unlink(name)


def resolve_digest(
    reference: str, *, credentials: dict[str, Any] | None = None, timeout: float = INSPECT_TIMEOUT_SECONDS
) -> str:
    """The digest the reference names now (a manifest list's own digest for a multi-arch image)."""
    host = registry_host(reference)
    if host is None:
        raise RegistryCheckFailed(f"{reference} names no registry host")
    skopeo = shutil.which(SKOPEO)
    if skopeo is None:
        raise RegistryCheckFailed("skopeo is not installed here (Debian package skopeo)")
    with _authfile(credentials) as authfile:
        command = [skopeo, "--command-timeout", f"{int(timeout)}s", "inspect", "--raw"]
        command.append(f"--tls-verify={'false' if is_loopback(host) else 'true'}")
        if authfile:
            command += ["--authfile", authfile]
        target = f"{repository(reference)}@{reference.split('@', 1)[1]}" if "@" in reference else reference
        try:
            done = subprocess.run(  # noqa: S603
                [*command, f"docker://{target}"],
                capture_output=True,
                timeout=timeout + 2,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            raise RegistryCheckFailed(f"no answer from {host} in {timeout:.0f} s") from error
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        message = lines[-1] if lines else f"skopeo exited with {done.returncode}"
        message = message.split('msg="', 1)[-1].rstrip('"').replace('\\"', '"')
        raise RegistryCheckFailed(message)
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def repository(reference: str) -> str:
    """The reference without its tag and digest."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}"


def pinned(reference: str, digest: str) -> str:
    """`repository@digest`: what runs is decided by the digest alone. (A tag beside it would be
    ignored by containerd and refused by CRI-O's containers/image.)"""
    return f"{repository(reference)}@{digest}"
