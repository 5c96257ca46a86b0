"""Management commands that do one round of background work, once or on a loop.

Once is what a Kubernetes CronJob runs; `--loop SECONDS` is for `make run` and single-container
installs. In a loop a failed round is logged and the next one runs anyway, and database
connections are recycled between rounds, as a request cycle would.
"""

import logging
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class PeriodicCommand(BaseCommand):
    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="Repeat every SECONDS seconds.")

    def handle(self, *args, loop: float | None = None, **options) -> None:
        if not loop:
            self.run_once()
            return
        while True:
            close_old_connections()
            try:
                self.run_once()
            except Exception:
                logger.exception("%s failed; trying again in %s s", self.__module__.rsplit(".", 1)[-1], loop)
            time.sleep(loop)

    def run_once(self) -> None:
        raise NotImplementedError
