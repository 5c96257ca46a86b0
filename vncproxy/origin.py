"""Which pages may open a console websocket: the site's own origins and the embedding sites.

A websocket handshake carries the browser's cookies whatever page started it, and cookies are not
separated by port or scheme, so the Origin is what stops another page (another site, or another
port of our host) from opening a signed-in student's console (cross-site websocket hijacking).
Origins are compared whole, scheme, host and port, as browsers define them; Channels' validator
compares host names only (ALLOWED_HOSTS), and let `http://<host>:1` and `https://<host>` through.

The allowed origins, checked on each handshake (settings may change in tests):

- the handshake's own origin, as Django's CSRF check takes a request's: the scheme (`wss` when
  the app server terminates TLS; behind a TLS-terminating proxy, `https` when settings.SECURE_PROXY_SSL_HEADER
  is set (BEHIND_TLS_PROXY=1) and the proxy's header says so) with the Host header, which must be
  one of ALLOWED_HOSTS. The page and its websocket reach the same host through the same proxy,
  so this is the page's origin whatever name or port the site is reached by;
- SITE_URL's origin (the public address, in case a proxy does not forward the scheme);
- CSRF_TRUSTED_ORIGINS (trusted to post forms with the user's cookies already; `*.` wildcards as
  Django reads them) and EMBED_ALLOWED_ORIGINS (sites that frame the labs, e.g. Moodle).

A handshake without an Origin header is not from a browser page: it may open a console with a
console ticket (a single-use credential it had to fetch itself, never sent by a browser on its
own), and its session cookie is ignored. The consumer refuses everything else with a close code
and a reason (vncproxy/consumers.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

Origin = tuple[str, str, int]  # scheme, host, port
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` as a comparable triple; None for "null" or anything malformed."""
    try:
        parts = urlsplit(text.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def handshake_is_secure(scope: dict[str, Any]) -> bool:
    """As HttpRequest.is_secure(): TLS here, or a trusted proxy's header saying it ended TLS."""
    if scope.get("scheme") == "wss":
        return True
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = header(scope, name)
        return value is not None and value.split(",", 1)[0].strip() == secure_value
    return False


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin of the page this handshake's Host and scheme name, if the Host is one of ours."""
    host = header(scope, b"host")
    if not host:
        return None
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]  # what Django allows then, too
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    scheme = "https" if handshake_is_secure(scope) else "http"
    return parse_origin(f"{scheme}://{host}")


def _matches(origin: Origin, patterns: Iterable[str]) -> bool:
    scheme, host, port = origin
    for pattern in patterns:
        if "://*." in pattern:  # a CSRF_TRUSTED_ORIGINS wildcard: any subdomain, that scheme
            wildcard = parse_origin(pattern.replace("://*.", "://", 1))
            if wildcard is not None and (scheme, port) == (wildcard[0], wildcard[2]):
                subdomain = host == wildcard[1] or host.endswith("." + wildcard[1])
                if subdomain:
                    return True
        elif parse_origin(pattern) == origin:
            return True
    return False


def origin_allowed(scope: dict[str, Any], origin_text: str) -> bool:
    """True if a page of this origin may open a console with the browser's cookies."""
    origin = parse_origin(origin_text)
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    trusted = [settings.SITE_URL, *settings.CSRF_TRUSTED_ORIGINS, *settings.EMBED_ALLOWED_ORIGINS]
    return _matches(origin, trusted)
