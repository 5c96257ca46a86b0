"""A lab as plain files, in memory: {relative path: bytes}. Written to a folder or a zip, read
back from either within limits (number and size of files, no path leaving the folder, no links).

    lab.yaml                     the lab: name, slug, description, limits, ready instances
    machines.yaml                its machines, in order: a VM names its image; a container
                                 (`kind: container`) names its OCI image, command, env, ...
    images.yaml                  the VM images the virtual machines use
    tutorials/<slug>/tutorial.yaml   a tutorial: its pages in order, their steps and checks
    tutorials/<slug>/pages/NN-<title>.md   one Markdown file per page
    media.yaml, media/<name>     files the pages refer to (images, PDFs, ...)
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from labfiles.yamlfile import LabFileError

MAX_FILES = 500
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024

Bundle = dict[str, bytes]


def _checked_path(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or "\x00" in name:
        raise LabFileError(name, "a path outside the lab's folder")
    return path.as_posix()


def _add(bundle: Bundle, name: str, data: bytes) -> None:
    if len(bundle) >= MAX_FILES:
        raise LabFileError(name, f"more than {MAX_FILES} files")
    if len(data) > MAX_FILE_BYTES:
        raise LabFileError(name, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if sum(map(len, bundle.values())) + len(data) > MAX_TOTAL_BYTES:
        raise LabFileError(name, f"the files are larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB together")
    bundle[name] = data


def read_folder(folder: Path) -> Bundle:
    """Every regular file under `folder`; symbolic links are refused (they could point anywhere)."""
    if not folder.is_dir():
        raise LabFileError(str(folder), "not a folder")
    bundle: Bundle = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in [*sorted(files), *(d for d in dirs if Path(root, d).is_symlink())]:
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
                raise LabFileError(relative, "not a regular file (links are not followed)")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise LabFileError(relative, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            _add(bundle, relative, path.read_bytes())
    return bundle


def write_folder(bundle: Bundle, folder: Path) -> None:
    """Write the files; files of an older export that the lab no longer has are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for existing in sorted(folder.rglob("*"), reverse=True):
        relative = existing.relative_to(folder).as_posix()
        if existing.is_file() and relative not in bundle:
            existing.unlink()
        elif existing.is_dir() and not any(existing.iterdir()):
            existing.rmdir()
    for name, data in bundle.items():
        path = folder / _checked_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def to_zip(bundle: Bundle, top: str) -> bytes:
    """A zip of the files under one folder `top` (the lab's slug); fixed dates, so the same lab
    gives the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(bundle):
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, bundle[name])
    return out.getvalue()


def read_zip(data: bytes) -> Bundle:
    """The files of a zip made by `to_zip` (or by hand: one top folder is optional)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise LabFileError("(upload)", "not a zip file") from None
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > MAX_FILES:
            raise LabFileError("(upload)", f"more than {MAX_FILES} files")
        if sum(info.file_size for info in entries) > MAX_TOTAL_BYTES:
            raise LabFileError(
                "(upload)", f"the files are larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB together"
            )
        names = [_checked_path(info.filename) for info in entries]
        tops = {PurePosixPath(name).parts[0] for name in names}
        strip = len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names)
        bundle: Bundle = {}
        for info, name in zip(entries, names, strict=True):
            if stat.S_ISLNK(info.external_attr >> 16):
                raise LabFileError(name, "a symbolic link")
            if info.file_size > MAX_FILE_BYTES:
                raise LabFileError(name, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            with archive.open(info) as member:
                content = member.read(MAX_FILE_BYTES + 1)
            relative = "/".join(PurePosixPath(name).parts[1:]) if strip else name
            _add(bundle, relative, content[: MAX_FILE_BYTES + 1])
        return bundle
