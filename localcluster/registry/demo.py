"""The demo images as containerDisks in a registry: what `make run` pushes to its embedded registry
and `make demo-images REGISTRY=...` to a user's.

    python -m localcluster demo-images --registry 127.0.0.1:5055 [--images DIR] [--authfile FILE]

Each image of the local image store (`python -m localcluster build-image`, `build-desktop-image`,
and `build-debian-image` where it was built) goes to REGISTRY/laborchestrator/NAME:TAG: the busybox
demo and the desktop as kernel-boot images (/boot/vmlinuz, /boot/initrd.img; KubeVirt's
kernelBoot.container), the Debian cloud-style image as a disk containerDisk (/disk/disk.qcow2). The
OCI layouts are kept beside the store, by the store's recipe, so a second push only checks which
blobs the registry has. Prints one `NAME REPOSITORY@DIGEST` line per image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from localcluster.registry.containerdisk import build_layout, disk_files, kernel_files
from localcluster.registry.pull import PullError
from localcluster.registry.reference import InvalidReference, parse_reference
from localcluster.registry.server import push

# The tag labfiles/management/commands/load_demo.py references (tests check they agree).
DEMO_TAG = "1"
REPOSITORY_PREFIX = "laborchestrator"
# image store folder -> repository name in the registry
DEMO_IMAGES = {"localcluster-demo": "demo", "localcluster-desktop": "desktop", "debian-cloud": "debian-cloud"}
KERNEL_PATH, INITRD_PATH = "/boot/vmlinuz", "/boot/initrd.img"


@dataclass(frozen=True)
class PushedImage:
    name: str
    reference: str  # REGISTRY/laborchestrator/NAME:TAG
    digest: str

    @property
    def pinned(self) -> str:
        """REGISTRY/laborchestrator/NAME@DIGEST: the tag dropped, as CRI-O wants a digest alone."""
        return f"{self.reference.rsplit(':', 1)[0]}@{self.digest}"


def demo_reference(registry: str, name: str) -> str:
    return f"{registry}/{REPOSITORY_PREFIX}/{name}:{DEMO_TAG}"


def _layout(folder: Path, layouts: Path) -> Path:
    """The OCI layout of one store image, built once per recipe."""
    meta = json.loads((folder / "image.json").read_text())
    layout = layouts / f"{folder.name}-{meta.get('recipe', 'unversioned')}"
    if (layout / "index.json").is_file():
        return layout
    partial = layout.with_name(layout.name + ".partial")
    if meta.get("kernel"):
        initrd = folder / meta["initrd"] if meta.get("initrd") else None
        build_layout(partial, kernel_files(folder / meta["kernel"], initrd), tag=DEMO_TAG)
    else:
        build_layout(partial, disk_files(folder / meta["disk"]), tag=DEMO_TAG)
    partial.rename(layout)
    return layout


def push_demo_images(
    registry: str, images: Path, *, credentials: dict | None = None, log=print
) -> list[PushedImage]:
    parse_reference(demo_reference(registry, "demo"))  # InvalidReference for a bad registry
    layouts = images / ".containerdisks"
    layouts.mkdir(parents=True, exist_ok=True)
    pushed = []
    for folder_name, name in DEMO_IMAGES.items():
        folder = images / folder_name
        if not (folder / "image.json").is_file():
            continue
        reference = demo_reference(registry, name)
        log(f"pushing {folder_name} as {reference} ...")
        layout = _layout(folder, layouts)
        digest = push(f"oci:{layout}:{DEMO_TAG}", reference, credentials=credentials)
        pushed.append(PushedImage(name, reference, digest))
    return pushed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster demo-images", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--registry", required=True, help="HOST[:PORT] of the registry, e.g. registry.example.org"
    )
    default_images = os.environ.get("LOCALCLUSTER_IMAGES", "var/localcluster/images")
    parser.add_argument(
        "--images", type=Path, default=Path(default_images), help="the image store (built images)"
    )
    parser.add_argument(
        "--authfile", type=Path, help="credentials (containers-auth.json, as `skopeo login` writes)"
    )
    args = parser.parse_args(argv)
    credentials = json.loads(args.authfile.read_text()) if args.authfile else None
    try:
        pushed = push_demo_images(
            args.registry, args.images, credentials=credentials, log=lambda m: print(m, file=sys.stderr)
        )
    except (InvalidReference, PullError) as exc:
        print(f"demo-images: {exc}", file=sys.stderr)
        return 1
    if not pushed:
        print(
            f"demo-images: no built image in {args.images} (python -m localcluster build-image)",
            file=sys.stderr,
        )
        return 1
    for image in pushed:
        print(image.name, image.pinned)
    return 0
