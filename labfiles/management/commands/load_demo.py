"""Load the demo content `make run` offers a new user: the labs kept as files in labfiles/demo/.

- "A desktop in your browser" (listed first: labs are sorted by name): a graphical Linux desktop
  and a small server; the student serves a web page on the server and opens it on the desktop.
- "Explore your lab network": two small machines with serial consoles that ping each other.
- "Containers beside a VM": a tools container (busybox, built by `python -m localcluster
  build-tools-image`) and a VM on one lab network; the student pings one from the other.

The demo images are kernel-boot containerDisks in a registry (`python -m localcluster
demo-images` pushes them): REGISTRY/laborchestrator/demo:1 and .../desktop:1, REGISTRY being
`--registry` (make run's embedded registry by default, 127.0.0.1:5055). The files name them
`localcluster/<name>:latest`, a placeholder this command replaces: no name resolves to docker.io.

Idempotent: existing objects (matched by name or slug) are left as they are, so an instructor's
edits to the demo survive the next `make run` (`import_lab labfiles/demo/<slug>` updates them to
the files instead). The one exception: a demo image whose reference is still one this command wrote
(the placeholder, an older default, another registry port) follows `--registry`.
"""

import re
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from labfiles.bundle import read_folder
from labfiles.importing import import_lab
from labs.models import VMImage

DEMO_FOLDER = Path(__file__).resolve().parents[2] / "demo"
# make run's embedded registry (laborchestrator/devserver.py) and the tag `demo-images` pushes
# (localcluster/registry/demo.py; tests check they agree).
DEFAULT_REGISTRY = "127.0.0.1:5055"
DEMO_TAG = "1"
KERNEL_BOOT = {
    "kernel_path": "/boot/vmlinuz",
    "initrd_path": "/boot/initrd.img",
    "kernel_args": "console=ttyS0",
}
# The demo images, by the name the files give them, and their name in the registry.
DEMO_IMAGES = {"Lab Orchestrator demo": "demo", "Lab Orchestrator desktop": "desktop"}
# What the files and earlier runs of this command wrote: references it may move to today's registry.
_OURS = re.compile(
    r"^(localcluster/(demo|desktop):latest|[^/]+/laborchestrator/(demo|desktop):[^/@]+(@sha256:[0-9a-f]{64})?)$"
)


def demo_reference(registry: str, name: str) -> str:
    return f"{registry}/laborchestrator/{name}:{DEMO_TAG}"


def follow_registry(image: VMImage, reference: str) -> None:
    """A demo image this command made, not since edited, moves to today's registry."""
    if image.container_disk_image != reference and _OURS.match(image.container_disk_image):
        image.container_disk_image = reference
        for field, value in KERNEL_BOOT.items():
            setattr(image, field, value)
        image.save(update_fields=["container_disk_image", *KERNEL_BOOT])


class Command(BaseCommand):
    help = "Create the demo VM images, the demo labs and their tutorials, unless they exist."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--registry",
            default=DEFAULT_REGISTRY,
            help=f"HOST[:PORT] holding the demo images (default {DEFAULT_REGISTRY}: make run's registry)",
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        names = []
        for folder in sorted(DEMO_FOLDER.iterdir()):
            if not folder.is_dir():
                continue
            lab, _ = import_lab(read_folder(folder), create_only=True)
            names.append(lab.name)
        for image in VMImage.objects.filter(name__in=DEMO_IMAGES):
            follow_registry(image, demo_reference(options["registry"], DEMO_IMAGES[image.name]))
            if (
                not image.has_ssh_server
                and image.name == "Lab Orchestrator demo"
                and _OURS.match(image.container_disk_image)
            ):
                # Demo images built before step checks had no SSH server; today's have dropbear.
                image.has_ssh_server = True
                image.save(update_fields=["has_ssh_server"])
        self.stdout.write(f"Demo labs {', '.join(repr(n) for n in names)} with their tutorials are ready.")
