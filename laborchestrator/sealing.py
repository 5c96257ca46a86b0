"""Secrets the database keeps (a registry password for a VM image), sealed with a key derived from
SECRET_KEY: a database dump alone does not reveal them. Changing SECRET_KEY makes sealed values
unreadable (`unseal` raises `Unsealable`); they must then be entered again."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class Unsealable(ValueError):
    """Sealed with another SECRET_KEY, or not a sealed value."""


def _fernet(purpose: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"laborchestrator:{purpose}".encode()
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str, *, purpose: str) -> str:
    return _fernet(purpose).encrypt(text.encode()).decode("ascii")


def unseal(token: str, *, purpose: str) -> str:
    try:
        return _fernet(purpose).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as error:
        raise Unsealable("sealed with another SECRET_KEY, or damaged") from error
