"""Container images the local cluster can run, and unpacking one into a runc bundle.

Where an image comes from, in order:
- a local OCI layout folder (`--container-images DIR`, optional): `DIR/<name>/` is a layout whose
  tags are the references' tags; `registry.example:5000/team/tools:1` resolves to `DIR/tools` tag `1`
  (the last path component), as a kubelet whose registry mirror has everything under short names;
- else its registry, with the images issue's puller (localcluster/registry/pull.py: skopeo, a cache
  by digest shared with the qemu runtime's pulls, pull Secrets, plain HTTP for loopback and
  `--insecure-registry` registries). The cache keeps blobs in one shared folder, so each pulled image
  gets a small layout of its own beside it whose blobs are links into that folder, for umoci.

Unpacking uses Debian's `umoci unpack`, which applies whiteouts and writes the image's runtime
config (`config.json`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.registry import pull
from localcluster.registry.reference import parse_reference
from localcluster.runtimes.base import docker_reference, image_not_found

PULLED_TAG = "image"  # the one tag of a pulled image's layout


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


def kubelet_pull_message(error: Exception) -> str:
    """The kubelet's ErrImagePull message for a failed pull, as CRI-O (containers/image) words it."""
    code = "DeadlineExceeded" if isinstance(error, pull.Timeout) else "Unknown"
    return f"rpc error: code = {code} desc = {error}"


class ContainerImages:
    def __init__(
        self,
        folder: Path | None,
        *,
        cache: pull.ImageCache | None = None,
        insecure_registries: frozenset[str] = frozenset(),
        timeout: float = 600.0,
    ) -> None:
        self.folder = folder
        self.cache = cache
        self.insecure_registries = insecure_registries
        self.timeout = timeout

    async def acquire(
        self, reference: str, *, credentials: dict[str, Any] | None = None, pull_policy: str = "IfNotPresent"
    ) -> LocalImage:
        """The image as an OCI layout umoci can unpack: local, else pulled; raises ImageNotFound with
        the kubelet's message."""
        try:
            return self.resolve(reference)
        except ImageNotFound:
            if self.cache is None:
                raise
        try:
            ref = parse_reference(reference)
            image = await asyncio.to_thread(
                pull.pull_image,
                reference,
                cache=self.cache,
                credentials=credentials,
                # Declared insecure, else the puller's rule (plain HTTP for loopback registries only).
                insecure=True if ref.registry in self.insecure_registries else None,
                timeout=self.timeout,
                pull_policy=pull_policy,
            )
        except pull.NotFound as exc:
            raise ImageNotFound(image_not_found(reference)) from exc
        except (pull.InvalidReference, pull.PullError) as exc:
            raise ImageNotFound(kubelet_pull_message(exc)) from exc
        return await asyncio.to_thread(self._layout_for, image)

    def _layout_for(self, image: pull.PulledImage) -> LocalImage:
        """A layout of the pulled image with its own blobs/ (links into the cache's shared blobs)."""
        assert self.cache is not None
        view = self.cache.unpacked_dir(image.digest) / "oci"
        if not (view / "index.json").is_file():
            staging = view.with_name(f".oci-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "blobs" / "sha256").mkdir(parents=True)
            shutil.copy2(image.layout_dir / "oci-layout", staging / "oci-layout")
            index = json.loads((image.layout_dir / "index.json").read_text())
            digests = [m["digest"] for m in index.get("manifests") or []]
            digests += [
                image.manifest["config"]["digest"],
                *(layer["digest"] for layer in image.manifest.get("layers") or []),
            ]
            for digest in digests:
                link = staging / "blobs" / "sha256" / digest.split(":", 1)[1]
                if not link.exists():
                    link.symlink_to(image.blob(digest))
            for entry in index.get("manifests") or []:
                entry.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = PULLED_TAG
            (staging / "index.json").write_text(json.dumps(index))
            shutil.rmtree(view, ignore_errors=True)
            os.replace(staging, view)
        return LocalImage(view, PULLED_TAG)

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
