"""`python -m localcluster containerdisk build ...`: a containerDisk without Docker.

    python -m localcluster containerdisk build disk.qcow2 --push registry.example.org/team/disk:1.0
    python -m localcluster containerdisk build disk.qcow2 --oci-layout out/ [--tag 1.0]
    python -m localcluster containerdisk build disk.qcow2 --oci-archive disk.tar
    python -m localcluster containerdisk build --kernel vmlinuz --initrd initrd.img --push REF

The image is KubeVirt's recipe (`FROM scratch` + `ADD --chown=107:107 DISK /disk/`; a kernelBoot
image holds /boot/vmlinuz and /boot/initrd.img), so it runs unchanged on a real cluster. Pushing and
archiving are skopeo's (credentials: `--authfile`, as `skopeo login` writes them, or
REGISTRY_AUTH_FILE); HTTP only for loopback registries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from localcluster.registry.containerdisk import build_layout, disk_files, kernel_files
from localcluster.registry.pull import SKOPEO, PullError
from localcluster.registry.reference import InvalidReference, parse_reference
from localcluster.registry.server import push


def build(args: argparse.Namespace) -> str:
    """Build the image; push or export it as asked; return what was written (a digest or a path)."""
    files = kernel_files(args.kernel, args.initrd) if args.kernel else disk_files(args.disk)
    for source in files.values():
        if not source.is_file():
            raise SystemExit(f"containerdisk build: {source} is not a file")
    tag = args.tag or "latest"
    if args.oci_layout:
        digest = build_layout(args.oci_layout, files, tag=tag)
        return f"oci:{args.oci_layout}:{tag} {digest}"
    with tempfile.TemporaryDirectory(prefix="containerdisk-") as scratch:
        layout = Path(scratch) / "layout"
        build_layout(layout, files, tag=tag)
        if args.oci_archive:
            subprocess.run(  # noqa: S603
                [
                    SKOPEO,
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    f"oci:{layout}:{tag}",
                    f"oci-archive:{args.oci_archive}",
                ],
                check=True,
            )
            return str(args.oci_archive)
        credentials = json.loads(args.authfile.read_text()) if args.authfile else None
        return push(f"oci:{layout}:{tag}", args.push, credentials=credentials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster containerdisk", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    builder = commands.add_parser(
        "build", help="a qcow2/raw disk (or a kernel and initrd) as a containerDisk image"
    )
    builder.add_argument(
        "disk", nargs="?", type=Path, help="the disk (qcow2, raw or img): /disk/NAME in the image"
    )
    builder.add_argument("--kernel", type=Path, help="a kernelBoot image instead: /boot/vmlinuz")
    builder.add_argument("--initrd", type=Path, help="with --kernel: /boot/initrd.img")
    out = builder.add_mutually_exclusive_group(required=True)
    out.add_argument("--push", metavar="REGISTRY/NAME:TAG", help="push to a registry")
    out.add_argument("--oci-layout", type=Path, metavar="DIR", help="write an OCI layout (tag: --tag)")
    out.add_argument("--oci-archive", type=Path, metavar="FILE", help="write an OCI archive (tar)")
    builder.add_argument("--tag", help="the tag inside an OCI layout or archive (default latest)")
    builder.add_argument("--authfile", type=Path, help="credentials for --push (containers-auth.json format)")
    args = parser.parse_args(argv)
    if bool(args.disk) == bool(args.kernel):
        parser.error("give a DISK or --kernel (with --initrd), not both")
    if args.push:
        try:
            parse_reference(args.push)
        except InvalidReference as exc:
            parser.error(str(exc))
    try:
        print(build(args))
    except (PullError, subprocess.CalledProcessError) as exc:
        print(f"containerdisk build: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["main"]
