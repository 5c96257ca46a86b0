"""Reading keys: a public key as a JWK, and what an administrator pastes as a platform's public key
(verifying its launches). No database: lti.models validates the field with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jwcrypto.jwk import JWK


def public_jwk(public_key_pem: str) -> dict[str, Any]:
    """The JWK of a public key; its `kid` is the RFC 7638 thumbprint, as pylti1p3 computes it when
    signing, so the kid in our JWTs' headers always names a key in our JWKS."""
    jwk = json.loads(JWK.from_pem(public_key_pem.encode()).export_public())
    jwk.update(alg="RS256", use="sig")
    return jwk


@dataclass(frozen=True)
class PlatformKeys:
    """A platform key pasted in the admin: a single PEM key verifies any `kid`; a pasted keyset is
    matched by `kid` like a fetched one."""

    key_set: dict[str, Any]
    single_pem: str | None


def platform_key_set(text: str) -> PlatformKeys:
    """Parse the platform key field: a PEM public key, a JWK, or a JWKS. Raises ValueError."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            jwk = public_jwk(text)
        except (ValueError, TypeError) as error:
            raise ValueError("Not a readable PEM public key.") from error
        return PlatformKeys(key_set={"keys": [jwk]}, single_pem=text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: JSON nested thousands deep
        raise ValueError("Paste a PEM public key (-----BEGIN PUBLIC KEY-----) or a JSON keyset.") from error
    if isinstance(data, dict) and "kty" in data:
        data = {"keys": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError('A keyset is a JSON object with a non-empty "keys" list.')
    for key in data["keys"]:
        try:
            JWK(**key)
        except Exception as error:  # jwcrypto raises several unrelated types for a bad key
            raise ValueError(f"Not a valid key in the keyset: {error}") from error
    return PlatformKeys(key_set=data, single_pem=None)
