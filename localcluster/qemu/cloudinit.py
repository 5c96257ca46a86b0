"""cloud-init NoCloud: the `cidata` ISO KubeVirt attaches for a `cloudInitNoCloud` volume."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (namespace, name) -> the Secret object, or None when it does not exist
SecretReader = Callable[[str, str], dict[str, Any] | None]


class CloudInitError(Exception):
    """The NoCloud volume cannot be built (e.g. its Secret is missing); the VMI fails with this."""


@dataclass(frozen=True)
class NoCloudData:
    user_data: str
    meta_data: str
    network_data: str | None = None


def _secret_value(secret: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        if key in (secret.get("data") or {}):
            try:
                return base64.b64decode(secret["data"][key]).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CloudInitError(f"secret key {key} is not base64 text") from exc
        if key in (secret.get("stringData") or {}):
            return str(secret["stringData"][key])
    return None


def nocloud_data(vmi: dict[str, Any], source: dict[str, Any], read_secret: SecretReader) -> NoCloudData:
    """The files of the cidata disk, as virt-launcher writes them for a `cloudInitNoCloud` volume."""
    namespace = vmi["metadata"]["namespace"]
    user_data: str | None = None
    if "userData" in source:
        user_data = source["userData"]
    elif "userDataBase64" in source:
        user_data = base64.b64decode(source["userDataBase64"]).decode()
    elif "secretRef" in source or "userDataSecretRef" in source:
        # The JSON name is `secretRef` (Go field UserDataSecretRef); the Go name is accepted too.
        name = (source.get("secretRef") or source["userDataSecretRef"])["name"]
        secret = read_secret(namespace, name)
        if secret is None:
            raise CloudInitError(f'secret "{name}" not found in namespace {namespace}')
        user_data = _secret_value(secret, "userdata", "userData")
        if user_data is None:
            raise CloudInitError(f'secret "{name}" has no userdata key')
    network_data: str | None = None
    if "networkData" in source:
        network_data = source["networkData"]
    elif "networkDataSecretRef" in source:
        secret = read_secret(namespace, source["networkDataSecretRef"]["name"])
        network_data = _secret_value(secret, "networkdata", "networkData") if secret else None
    hostname = vmi["spec"].get("hostname") or vmi["metadata"]["name"]
    # KubeVirt's instance-id is `<name>.<namespace>`, so cloud-init treats each VMI as a new instance.
    meta = f"instance-id: {vmi['metadata']['name']}.{namespace}\nlocal-hostname: {hostname}\n"
    return NoCloudData(user_data or "", meta, network_data)


async def write_cidata_iso(genisoimage: str, data: NoCloudData, folder: Path) -> Path:
    """Write the files and pack them into `folder/cidata.iso` (volume label `cidata`)."""
    files = folder / "cidata"
    files.mkdir(parents=True, exist_ok=True)
    (files / "user-data").write_text(data.user_data)
    (files / "meta-data").write_text(data.meta_data)
    names = ["user-data", "meta-data"]
    if data.network_data is not None:
        (files / "network-config").write_text(data.network_data)
        names.append("network-config")
    iso = folder / "cidata.iso"
    proc = await asyncio.create_subprocess_exec(
        genisoimage,
        "-quiet",
        "-output",
        str(iso),
        "-volid",
        "cidata",
        "-joliet",
        "-rock",
        *names,
        cwd=files,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise CloudInitError(f"genisoimage failed: {err.decode(errors='replace').strip()[-300:]}")
    return iso
