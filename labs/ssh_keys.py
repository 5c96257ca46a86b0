"""SSH key pairs the app makes for step checks: a login key per instance and a host key per machine.

Ed25519 in OpenSSH's formats (what cloud-init's `ssh_authorized_keys` and `ssh_keys` take, and what
asyncssh reads), made with `cryptography`. Pure: nothing here stores or sends a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    private_key: str  # OpenSSH private key format, unencrypted
    public_key: str  # one `authorized_keys` line: "ssh-ed25519 AAAA... comment"


def new_key_pair(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private_key=private, public_key=f"{public.decode('ascii')} {comment}")
