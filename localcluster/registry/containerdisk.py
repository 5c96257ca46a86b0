"""containerDisks without Docker: build one as an OCI layout, and take its disk out of a pulled image.

Building follows KubeVirt's recipe (docs: "containerDisk" in the user guide):

    FROM scratch
    ADD --chown=107:107 disk.qcow2 /disk/

that is one layer holding `disk/NAME`, owned by 107:107 (qemu in virt-launcher) with mode 0440, and
an image config for linux/amd64. A kernel-boot image (`kernelBoot.container`) holds `boot/vmlinuz`
and `boot/initrd.img` the same way. The layer is a tar stream written with Python's tarfile through
gzip (level 1: disks are big, mostly already compressed or zeros) straight into its blob file, hashed
on the way (compressed digest for the manifest, uncompressed one for the config's diff_ids): nothing
is held whole in memory. Written as data into an OCI layout; pushing it is skopeo's job (server.push).

Extracting reads the pulled layers as tar streams in order, applies whiteouts, and copies the files
it wants to disk, sparse where the data is zeros.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from localcluster.registry.pull import PulledImage

QEMU_UID = QEMU_GID = 107  # virt-launcher's qemu user, the owner KubeVirt's recipe sets
DISK_DIR = "disk"
CHUNK = 1 << 20
# Fixed times make a build reproducible: the same disk gives the same digest.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


class ContainerDiskError(Exception):
    """The image is not a containerDisk KubeVirt could use; the message is virt-handler's."""


class _HashingWriter(io.RawIOBase):
    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def _write_blob(layout: Path, data: bytes) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return Blob(f"sha256:{digest}", len(data))


def _layer(layout: Path, files: dict[str, Path]) -> tuple[Blob, str]:
    """One gzip tar layer holding `files` (path in image -> source); returns its blob and diff_id."""
    partial = layout / "blobs" / "sha256" / "layer.partial"
    with partial.open("wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=1, mtime=EPOCH) as gz:
            uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
                directories = sorted({str(Path(name).parent) for name in files} - {"."})
                for directory in directories:
                    info = tarfile.TarInfo(directory + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o555, EPOCH
                    tar.addfile(info)
                for name, source in sorted(files.items()):
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = source.stat().st_size, 0o440, EPOCH
                    info.uid, info.gid = QEMU_UID, QEMU_GID
                    with source.open("rb") as data:
                        tar.addfile(info, data)
    digest = compressed.sha256.hexdigest()
    partial.rename(layout / "blobs" / "sha256" / digest)
    return Blob(f"sha256:{digest}", compressed.size), f"sha256:{uncompressed.sha256.hexdigest()}"


def build_layout(layout: Path, files: dict[str, Path], *, tag: str = "image") -> str:
    """An OCI layout at `layout` whose image `tag` holds `files`; returns the manifest digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer, diff_id = _layer(layout, files)
    config = {
        "created": "1970-01-01T00:00:00Z" if EPOCH == 0 else None,
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config = {key: value for key, value in config.items() if value is not None}
    config_blob = _write_blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_blob.digest, "size": config_blob.size},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
    }
    manifest_blob = _write_blob(layout, json.dumps(manifest, sort_keys=True).encode())
    index_file = layout / "index.json"
    index = (
        json.loads(index_file.read_text()) if index_file.is_file() else {"schemaVersion": 2, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index["manifests"].append(
        {
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_file.write_text(json.dumps(index))
    return manifest_blob.digest


def disk_files(disk: Path) -> dict[str, Path]:
    return {f"{DISK_DIR}/{disk.name}": disk}


def kernel_files(kernel: Path, initrd: Path | None) -> dict[str, Path]:
    files = {"boot/vmlinuz": kernel}
    if initrd is not None:
        files["boot/initrd.img"] = initrd
    return files


# -- extracting -----------------------------------------------------------------------------------------
def _copy_sparse(source: BinaryIO, target: Path) -> None:
    """Copy a stream, leaving holes where whole chunks are zeros (a 2 GiB empty disk stays small)."""
    zero = bytes(CHUNK)
    with target.open("wb") as out:
        size = 0
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if chunk == zero[: len(chunk)]:
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate(size)


def _normalise(name: str) -> str:
    return os.path.normpath("/" + name).lstrip("/")


def extract(image: PulledImage, wanted: Iterable[str], target: Path) -> dict[str, Path]:
    """The files of `image` (after all layers) whose path starts with one of `wanted`, copied under
    `target`. Layers are read in order as streams; a whiteout (`.wh.NAME`, `.wh..wh..opq`) removes
    what lower layers wrote."""
    prefixes = tuple(_normalise(w) for w in wanted)
    found: dict[str, Path] = {}
    target.mkdir(parents=True, exist_ok=True)
    for index, blob in enumerate(image.layers):
        with blob.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                name = _normalise(member.name)
                folder, _, base = name.rpartition("/")
                if base == ".wh..wh..opq":
                    for key in [k for k in found if k.startswith(folder + "/")]:
                        found.pop(key).unlink(missing_ok=True)
                    continue
                if base.startswith(".wh."):
                    gone = f"{folder}/{base[4:]}".lstrip("/")
                    for key in [k for k in found if k == gone or k.startswith(gone + "/")]:
                        found.pop(key).unlink(missing_ok=True)
                    continue
                if not (member.isfile() and name.startswith(prefixes)):
                    continue
                source = tar.extractfile(member)
                assert source is not None
                path = target / f"{index}-{name.replace('/', '_')}"
                _copy_sparse(source, path)
                if name in found:
                    found[name].unlink(missing_ok=True)
                found[name] = path
    return found


def disk_of(image: PulledImage, target: Path, path: str | None = None) -> tuple[Path, str]:
    """The containerDisk's disk and its format, as virt-handler finds it (pkg/container-disk's
    GetImage): `path` when the volume names one, else the one file in /disk."""
    if path:
        files = extract(image, [path], target)
        disk = files.get(_normalise(path))
        if disk is None:
            raise ContainerDiskError(f"No image on path /{_normalise(path)}")
    else:
        files = extract(image, [DISK_DIR + "/"], target)
        if not files:
            raise ContainerDiskError(
                f"Failed to check /{DISK_DIR} for disks: open /{DISK_DIR}: no such file or directory"
            )
        if len(files) > 1:
            raise ContainerDiskError(
                f"More than one file found in folder /{DISK_DIR}, only one disk is allowed"
            )
        disk = next(iter(files.values()))
    with disk.open("rb") as head:
        magic = head.read(4)
    return disk, "qcow2" if magic == b"QFI\xfb" else "raw"


def kernel_of(
    image: PulledImage, target: Path, kernel_path: str, initrd_path: str | None
) -> tuple[Path, Path | None]:
    """kernelBoot.container: the kernel and initrd at the paths the VMI names."""
    wanted = [kernel_path] + ([initrd_path] if initrd_path else [])
    files = extract(image, wanted, target)
    kernel = files.get(_normalise(kernel_path))
    if kernel is None:
        raise ContainerDiskError(f"kernel not found at {kernel_path} in the kernelBoot container")
    initrd = files.get(_normalise(initrd_path)) if initrd_path else None
    if initrd_path and initrd is None:
        raise ContainerDiskError(f"initrd not found at {initrd_path} in the kernelBoot container")
    return kernel, initrd
