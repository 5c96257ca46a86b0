"""Stop every active lab instance, recording why: `make run` runs it when its local cluster shuts
down, and again when it starts (after a crash, the fresh local cluster holds none of them)."""

from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from labs.lifecycle import instances_stop_all


class Command(BaseCommand):
    help = "Stop every active lab instance and record the reason on each."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--reason", required=True, help="Recorded on each instance for its owner and staff."
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="How long to wait for them to be gone.",
        )

    def handle(self, *args, reason: str, wait: float, **options) -> None:
        instances = instances_stop_all(reason=reason, wait_seconds=wait)
        stopping = [instance.pk for instance in instances if instance.status == "stopping"]
        if instances:
            total = ngettext("%(count)d lab instance", "%(count)d lab instances", len(instances))
            self.stdout.write(
                f"Stopped {len(instances) - len(stopping)} of {total % {'count': len(instances)}}."
            )
        if stopping:
            self.stdout.write(f"Still stopping (reconcile finishes them): {', '.join(map(str, stopping))}")
