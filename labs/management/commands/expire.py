"""Stop lab instances past their lifetime or idle timeout.

Safe to run in several processes at once: each instance is claimed with a conditional UPDATE.
`--loop SECONDS` keeps running, for development (`make run`) or a single-container deployment;
in a cluster, a CronJob running it once a minute does the same.
"""

from django.utils.translation import ngettext

from laborchestrator.periodic import PeriodicCommand
from labs.exceptions import ClusterError
from labs.lifecycle import instance_expire_due


class Command(PeriodicCommand):
    help = "Stop lab instances whose lifetime or idle timeout has passed."

    def run_once(self) -> None:
        try:
            claimed = instance_expire_due()
        except ClusterError as error:
            self.stderr.write(f"expire: {error.message}")
            return
        if claimed:
            count = ngettext("%(count)d expired instance", "%(count)d expired instances", len(claimed))
            self.stdout.write(f"Stopping {count % {'count': len(claimed)}}: {', '.join(map(str, claimed))}")
