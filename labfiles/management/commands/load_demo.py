"""Load the demo content `make run` offers a new user: the labs kept as files in labfiles/demo/.

- "A desktop in your browser" (listed first: labs are sorted by name): a graphical Linux desktop
  and a small server; the student serves a web page on the server and opens it on the desktop.
- "Explore your lab network": two small machines with serial consoles that ping each other.
- "Containers beside a VM": a tools container (busybox, built by `python -m localcluster
  build-tools-image`) and a VM on one lab network; the student pings one from the other.

Idempotent: existing objects (matched by name or slug) are left as they are, so an instructor's
edits to the demo survive the next `make run` (`import_lab labfiles/demo/<slug>` updates them to
the files instead).
"""

from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from labfiles.bundle import read_folder
from labfiles.importing import import_lab
from labs.models import VMImage

DEMO_FOLDER = Path(__file__).resolve().parents[2] / "demo"
DEMO_IMAGE_REFERENCE = "localcluster/demo:latest"


class Command(BaseCommand):
    help = "Create the demo VM images, the demo labs and their tutorials, unless they exist."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        names = []
        for folder in sorted(DEMO_FOLDER.iterdir()):
            lab, _ = import_lab(read_folder(folder), create_only=True)
            names.append(lab.name)
        # Demo images built before step checks had no SSH server; today's have dropbear.
        VMImage.objects.filter(container_disk_image=DEMO_IMAGE_REFERENCE, has_ssh_server=False).update(
            has_ssh_server=True
        )
        self.stdout.write(f"Demo labs {', '.join(repr(n) for n in names)} with their tutorials are ready.")
