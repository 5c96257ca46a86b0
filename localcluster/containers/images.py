"""Container images the local cluster can run, and unpacking one into a runc bundle.

Images are OCI image layouts in a folder (`--container-images DIR`): `DIR/<name>/` is a layout
(`oci-layout`, `index.json`, `blobs/`) whose tags are the references' tags. A reference
`registry.example:5000/team/tools:1` resolves to `DIR/tools` tag `1` (the last path component),
as a kubelet whose registry mirror has everything under short names would. Unpacking uses Debian's
`umoci unpack`, which applies whiteouts and writes the image's runtime config (`config.json`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster.runtimes.base import docker_reference, image_not_found


class ImageNotFound(Exception):
    """The reference names no image here; the message is containerd's ErrImagePull text."""


class UnpackFailed(Exception):
    pass


@dataclass(frozen=True)
class LocalImage:
    layout: Path
    tag: str

    @property
    def umoci_ref(self) -> str:
        return f"{self.layout}:{self.tag}"


def split_reference(reference: str) -> tuple[str, str]:
    """(name, tag) of the last path component of the fully qualified reference."""
    full = docker_reference(reference)
    last = full.rsplit("/", 1)[-1]
    if "@" in last:
        name, _, digest = last.partition("@")
        return name, digest
    name, _, tag = last.partition(":")
    return name, tag or "latest"


class ContainerImages:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def resolve(self, reference: str) -> LocalImage:
        name, tag = split_reference(reference)
        if self.folder is None or tag.startswith("sha256:"):
            raise ImageNotFound(image_not_found(reference))
        layout = self.folder / name
        try:
            index = json.loads((layout / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise ImageNotFound(image_not_found(reference)) from exc
        tags = {
            (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            for m in index.get("manifests") or []
        }
        if tag not in tags:
            raise ImageNotFound(image_not_found(reference))
        return LocalImage(layout, tag)


async def unpack(umoci: str, image: LocalImage, bundle: Path) -> None:
    """`umoci unpack` the image into `bundle` (rootfs/ and config.json)."""
    proc = await asyncio.create_subprocess_exec(
        umoci,
        "unpack",
        "--image",
        image.umoci_ref,
        str(bundle),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise UnpackFailed(f"umoci unpack {image.umoci_ref}: {err.decode(errors='replace').strip()}")


def image_config(image: LocalImage) -> dict:
    """The image's `config` (Entrypoint, Cmd, Env, User, WorkingDir) from its layout: the kubelet needs
    Entrypoint and Cmd apart to apply a pod's command and args, which the unpacked bundle merges."""
    index = json.loads((image.layout / "index.json").read_text())
    for entry in index.get("manifests") or []:
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == image.tag:
            manifest = json.loads(_blob(image.layout, entry["digest"]))
            config = json.loads(_blob(image.layout, manifest["config"]["digest"]))
            return config.get("config") or {}
    return {}


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()
