"""Re-render every page and step, e.g. after the sanitiser's allowlist or Markdown changed.

Saved HTML is otherwise only refreshed when its Markdown is edited.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from tutorials.models import Step, TutorialPage


class Command(BaseCommand):
    help = "Render the Markdown of every tutorial page and step again and save the HTML."

    def handle(self, *args, **options) -> None:
        failures = 0
        for model, source_field in ((TutorialPage, "body_markdown"), (Step, "text_markdown")):
            rendered = 0
            for item in model.objects.iterator():
                try:
                    item.save(update_fields=[source_field])  # save() renders the source again
                except ValidationError as error:
                    failures += 1
                    self.stderr.write(f"{model.__name__} {item.pk}: {' '.join(error.messages)}")
                else:
                    rendered += 1
            self.stdout.write(f"{rendered} {model._meta.verbose_name_plural} rendered")
        if failures:
            raise SystemExit(1)
