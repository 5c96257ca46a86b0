"""`python -m localcluster demo-images`: the demo images as kernel-boot images in a registry, under
the names load_demo references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from labfiles.management.commands.load_demo import KERNEL_BOOT
from labfiles.management.commands.load_demo import demo_reference as load_demo_reference
from localcluster.registry.containerdisk import kernel_of
from localcluster.registry.pull import ImageCache, pull_image
from tests.localcluster_qemu.qemu_helpers import demo_images

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_image_is_pushed_where_load_demo_looks(oci_registry, tmp_path):
    images = demo_images()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster",
            "demo-images",
            "--registry",
            oci_registry.host,
            "--images",
            str(images),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pushed = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    reference = load_demo_reference(oci_registry.host, "demo")
    assert pushed["demo"].startswith(reference.rsplit(":", 1)[0] + "@sha256:")
    assert pull_image(reference, cache=ImageCache(tmp_path / "by-tag")).digest == pushed["demo"].split("@")[1]

    image = pull_image(pushed["demo"], cache=ImageCache(tmp_path / "cache"))
    kernel, initrd = kernel_of(image, tmp_path / "x", KERNEL_BOOT["kernel_path"], KERNEL_BOOT["initrd_path"])
    meta = json.loads((images / "localcluster-demo" / "image.json").read_text())
    assert kernel.read_bytes() == (images / "localcluster-demo" / meta["kernel"]).read_bytes()
    assert (
        initrd is not None
        and initrd.stat().st_size == (images / "localcluster-demo" / meta["initrd"]).stat().st_size
    )


def test_an_invalid_registry_is_refused(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster",
            "demo-images",
            "--registry",
            "Not A Host",
            "--images",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 1 and "demo-images:" in done.stderr
