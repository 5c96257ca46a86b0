"""The image store behind `containerDisk.image` references (`--images DIR`).

Layout: one folder per image, each with an `image.json` naming its reference and files:

    DIR/localcluster-demo/image.json   {"reference": "localcluster/demo:latest",
                                        "kernel": "vmlinux", "initrd": "initrd.img", "cmdline": ""}
    DIR/cirros/image.json              {"reference": "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
                                        "disk": "disk.qcow2", "format": "qcow2"}

A kernel image boots with QEMU's `-kernel/-initrd` (optional `cmdline` is appended); a disk image
(`format` qcow2 or raw, qcow2 when omitted) boots from a throw-away copy-on-write overlay. Folder names
are free; the reference in `image.json` is what VMIs use. A reference without a tag means `:latest`,
and `docker.io/` / `docker.io/library/` prefixes are ignored, as container runtimes do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    reference: str
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    disk: Path | None = None
    disk_format: str = "qcow2"

    @property
    def is_kernel(self) -> bool:
        return self.kernel is not None


class ImageNotFound(Exception):
    def __init__(self, reference: str, available: list[str]) -> None:
        self.reference = reference
        self.available = available
        listed = ", ".join(available) if available else "none (build one: python -m localcluster build-image)"
        super().__init__(f"image not found: {reference}; available: {listed}")


def normalise_reference(reference: str) -> str:
    ref = reference.strip()
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def _load(folder: Path) -> Image:
    meta = json.loads((folder / "image.json").read_text())
    reference = normalise_reference(meta["reference"])
    if meta.get("kernel"):
        kernel = folder / meta["kernel"]
        initrd = folder / meta["initrd"] if meta.get("initrd") else None
        for path in (kernel, initrd):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is missing")
        return Image(reference, kernel=kernel, initrd=initrd, cmdline=meta.get("cmdline", ""))
    disk = folder / meta["disk"]
    fmt = meta.get("format", "qcow2")
    if not disk.is_file():
        raise ValueError(f"{disk} is missing")
    if fmt not in ("qcow2", "raw"):
        raise ValueError(f"format {fmt!r} is neither qcow2 nor raw")
    return Image(reference, disk=disk, disk_format=fmt)


class ImageStore:
    """Read on every lookup, so images added while the server runs are found without a restart."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root else None

    def images(self) -> dict[str, Image]:
        found: dict[str, Image] = {}
        if self.root is None or not self.root.is_dir():
            return found
        for manifest in sorted(self.root.glob("*/image.json")):
            try:
                image = _load(manifest.parent)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring image %s: %s", manifest.parent, exc)
                continue
            found.setdefault(image.reference, image)
        return found

    def resolve(self, reference: str) -> Image:
        images = self.images()
        image = images.get(normalise_reference(reference))
        if image is None:
            raise ImageNotFound(reference, sorted(images))
        return image

    def any_kernel(self) -> Path | None:
        """Some kernel in the store, for the KVM probe."""
        return next((i.kernel for i in self.images().values() if i.kernel is not None), None)
