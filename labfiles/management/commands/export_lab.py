"""Write a lab as a folder of plain files (or a zip of it): see labfiles.bundle for the layout."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labfiles.bundle import to_zip, write_folder
from labfiles.export import export_lab
from labs.models import Lab


class Command(BaseCommand):
    help = "Export a lab (by slug) as a folder of YAML, Markdown and media files, or as a zip."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument(
            "destination", help="a folder (created or brought up to date) or a file ending in .zip"
        )

    def handle(self, *args, slug: str, destination: str, **options) -> None:
        lab = Lab.objects.filter(slug=slug).first()
        if lab is None:
            raise CommandError(f"No lab with the slug {slug!r}.")
        bundle = export_lab(lab)
        target = Path(destination)
        if target.suffix == ".zip":
            target.write_bytes(to_zip(bundle, lab.slug))
        else:
            write_folder(bundle, target)
        self.stdout.write(f"Exported {lab.slug} ({len(bundle)} files) to {target}")
