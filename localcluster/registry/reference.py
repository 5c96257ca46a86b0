"""Image references, parsed as the distribution grammar (distribution/reference/regexp.go) spells them.

One difference on purpose: the registry host is required. A name without one (`demo:latest`,
`kubevirt/cirros`) resolves to docker.io in every container runtime, a registry nobody here controls,
so it is refused instead of guessed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?P<registry>{_DOMAIN})/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidReference(ValueError):
    """Not an image reference we can pull (the kubelet's InvalidImageName)."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def for_pull(self) -> str:
        """What to ask the registry for: the digest alone when there is one (containers/image, like
        CRI-O, refuses a tag and a digest together; the digest decides anyway)."""
        return f"{self.name}@{self.digest}" if self.digest else str(self)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    @property
    def is_loopback(self) -> bool:
        host = (
            self.registry.rsplit(":", 1)[0]
            if not self.registry.startswith("[")
            else self.registry[1:].split("]")[0]
        )
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def parse_reference(text: str) -> Reference:
    """`registry.example:5000/team/disk:1.0` or `...@sha256:...`; `:latest` when neither is given."""
    value = text.strip()
    match = _REFERENCE.match(value)
    first = value.split("/", 1)[0]
    has_host = "/" in value and (
        "." in first or ":" in first or first == "localhost" or first.startswith("[")
    )
    if not has_host:
        raise InvalidReference(
            f"{text!r} names no registry host; it would resolve to docker.io. "
            "Write the full reference, e.g. registry.example.org/team/disk:1.0"
        )
    if match is None:
        raise InvalidReference(
            f"{text!r} is not an image reference (registry/repository[:tag][@sha256:digest])"
        )
    tag, digest = match["tag"], match["digest"]
    return Reference(match["registry"], match["repository"], tag if tag or digest else "latest", digest)
