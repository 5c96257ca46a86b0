"""Print this installation's id: the `laborchestrator/installation` label value of its objects.

Generates and stores it if no process did yet (INSTALLATION_ID overrides it). Useful to set the same
value explicitly, or to find this installation's namespaces:
`kubectl get ns -l laborchestrator/installation=$(manage.py installation_id)`.
"""

from django.core.management.base import BaseCommand

from labs.installation import installation_id


class Command(BaseCommand):
    help = "Print this installation's id (the value of the laborchestrator/installation label)."

    def handle(self, *args, **options) -> None:
        self.stdout.write(installation_id())
