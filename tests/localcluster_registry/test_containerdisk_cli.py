"""`python -m localcluster containerdisk build`: the image it pushes and the files it writes."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from localcluster.registry.containerdisk import disk_of, kernel_of
from localcluster.registry.pull import ImageCache, pull_image

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcluster", "containerdisk", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )


def test_build_and_push_a_disk(oci_registry, tmp_path):
    disk = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    reference = oci_registry.reference("tests/cli-disk:1.0")

    done = cli("build", str(disk), "--push", reference)

    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    image = pull_image(reference, cache=ImageCache(tmp_path / "cache"))
    assert image.digest == digest
    extracted, fmt = disk_of(image, tmp_path / "x")
    assert fmt == "qcow2" and extracted.read_bytes() == disk.read_bytes()
    with tarfile.open(image.layers[0]) as layer:
        member = layer.getmember("disk/tiny.qcow2")
    assert (member.uid, member.gid, member.mode) == (107, 107, 0o440)


def test_the_same_disk_builds_the_same_image(tmp_path):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"same" * 1000)
    first = cli("build", str(disk), "--oci-layout", str(tmp_path / "a"), "--tag", "1")
    second = cli("build", str(disk), "--oci-layout", str(tmp_path / "b"), "--tag", "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[-1] == second.stdout.split()[-1]


def test_a_kernel_image_and_an_archive(oci_registry, tmp_path):
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel bytes")
    initrd.write_bytes(b"initrd bytes")
    archive = tmp_path / "kernel.tar"

    done = cli("build", "--kernel", str(kernel), "--initrd", str(initrd), "--oci-archive", str(archive))
    assert done.returncode == 0, done.stderr
    reference = oci_registry.reference("tests/cli-kernel:1")
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            f"docker://{reference}",
        ],
        check=True,
    )
    image = pull_image(reference, cache=ImageCache(tmp_path / "cache"))
    got_kernel, got_initrd = kernel_of(image, tmp_path / "x", "/boot/vmlinuz", "/boot/initrd.img")
    assert (
        got_kernel.read_bytes() == b"kernel bytes"
        and got_initrd
        and got_initrd.read_bytes() == b"initrd bytes"
    )


def test_a_reference_without_a_registry_is_refused(tmp_path):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"x")
    done = cli("build", str(disk), "--push", "demo:latest")
    assert done.returncode == 2
    assert "docker.io" in done.stderr
