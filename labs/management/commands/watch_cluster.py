"""Watch the cluster and write every instance's and machine's status to the database (labs.watcher).

Long-running, one per cluster (several are harmless: every write is conditional, but each one is
API load): `make run` starts it next to `expire` and `reconcile`; in Kubernetes it is the
`laborchestrator-watcher` Deployment. Ends on SIGTERM/SIGINT.
"""

import signal
import threading
from pathlib import Path

from django.core.management.base import BaseCommand

from labs.watcher import ClusterWatcher


class Command(BaseCommand):
    help = "Watch the cluster's lab namespaces and machines and record their status in the database."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--heartbeat-file",
            type=Path,
            help="Touch this file at every heartbeat (the Deployment's liveness probe checks its age).",
        )

    def handle(self, *args, heartbeat_file: Path | None = None, **options) -> None:
        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: done.set())
        self.stdout.write("Watching the cluster; status goes to the database.")
        on_beat = heartbeat_file.touch if heartbeat_file else None
        ClusterWatcher(on_heartbeat=on_beat).run(until=done.is_set)
