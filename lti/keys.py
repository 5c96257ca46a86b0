"""The tool's RSA keys (signing deep-linking responses and token requests) and the platforms' public
keys (verifying launches)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jwcrypto.jwk import JWK

from lti.models import ToolKey

KEY_BITS = 2048


def public_jwk(public_key_pem: str) -> dict[str, Any]:
    """The JWK of a public key; its `kid` is the RFC 7638 thumbprint, as pylti1p3 computes it when
    signing, so the kid in our JWTs' headers always names a key in our JWKS."""
    jwk = json.loads(JWK.from_pem(public_key_pem.encode()).export_public())
    jwk.update(alg="RS256", use="sig")
    return jwk


def generate_key(*, now: datetime | None = None) -> ToolKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ToolKey.objects.create(
        kid=public_jwk(public_pem)["kid"],
        private_key=private_pem,
        public_key=public_pem,
        created_at=now or timezone.now(),
    )


def current_key() -> ToolKey:
    """The key that signs now: the newest not retired. The first call makes one, so a new
    installation works before anyone ran `lti_rotate_keys`."""
    key = ToolKey.objects.current().first()
    return key if key is not None else generate_key()


@dataclass(frozen=True)
class Rotation:
    new_key: ToolKey
    retired: int
    deleted: int


def rotate_keys(*, now: datetime | None = None) -> Rotation:
    """A new signing key; the previous ones are retired (still in the JWKS for LTI_KEY_GRACE_HOURS)
    and keys retired longer ago than that are deleted."""
    now = now or timezone.now()
    grace = timedelta(hours=settings.LTI_KEY_GRACE_HOURS)
    with transaction.atomic():
        retired = ToolKey.objects.current().update(retired_at=now)
        new_key = generate_key(now=now)
        deleted, _ = ToolKey.objects.filter(retired_at__lte=now - grace).delete()
    return Rotation(new_key=new_key, retired=retired, deleted=deleted)


def jwks(*, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    now = now or timezone.now()
    current_key()  # so a fresh installation publishes the key it is about to sign with
    keys = ToolKey.objects.published(now=now, grace=timedelta(hours=settings.LTI_KEY_GRACE_HOURS))
    return {"keys": [public_jwk(key.public_key) for key in keys]}


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
