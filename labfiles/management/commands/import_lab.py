"""Create or update a lab from a folder of plain files or a zip (labfiles.importing)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labfiles.bundle import read_folder, read_zip
from labfiles.importing import import_lab
from labfiles.yamlfile import LabFileError


class Command(BaseCommand):
    help = "Import a lab from a folder or zip made by export_lab; --dry-run shows what would change."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="the lab's folder, or a .zip")
        parser.add_argument("--dry-run", action="store_true", help="Only show what would change.")

    def handle(self, *args, source: str, dry_run: bool = False, **options) -> None:
        path = Path(source)
        try:
            bundle = read_zip(path.read_bytes()) if path.is_file() else read_folder(path)
            lab, changes = import_lab(bundle, dry_run=dry_run)
        except LabFileError as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"{source}: {error.strerror}") from None
        for change in changes:
            self.stdout.write(str(change))
        if not changes:
            self.stdout.write("No changes: the lab already matches the files.")
        elif dry_run:
            self.stdout.write(f"Dry run: {len(changes)} change(s) not made.")
        else:
            self.stdout.write(f"Imported {lab.slug}: {len(changes)} change(s).")
