"""Stop lab instances past their lifetime or idle timeout.

Safe to run in several processes at once: each instance is claimed with a conditional UPDATE.
`--loop SECONDS` keeps running, for development (`make run`) or a single-container deployment;
in a cluster, a CronJob running it once a minute does the same.
"""

import time

from django.core.management.base import BaseCommand

from labs.exceptions import ClusterError
from labs.lifecycle import instance_expire_due


class Command(BaseCommand):
    help = "Stop lab instances whose lifetime or idle timeout has passed."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="Repeat every SECONDS seconds.")

    def handle(self, *args, loop: float | None = None, **options) -> None:
        while True:
            self.run_once()
            if not loop:
                return
            time.sleep(loop)

    def run_once(self) -> None:
        try:
            claimed = instance_expire_due()
        except ClusterError as error:
            self.stderr.write(f"expire: {error.message}")
            return
        if claimed:
            self.stdout.write(f"Stopping {len(claimed)} expired instance(s): {', '.join(map(str, claimed))}")
