"""The tool's RSA keys (signing deep-linking responses and token requests), stored as ToolKey rows;
reading key formats (the platforms' public keys too) is lti.key_formats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lti.key_formats import public_jwk
from lti.models import ToolKey

KEY_BITS = 2048


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
