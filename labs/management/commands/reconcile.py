"""Make the cluster agree with the database (see labs.lifecycle.reconcile).

Deletes this installation's namespaces (labelled managed-by=laborchestrator and with its
laborchestrator/installation id) that no active instance owns, reports managed namespaces without an
installation label (made by an older version; never deleted), marks
instances whose namespace vanished, finishes stops and refreshes states; then refills the labs'
pools of ready instances (labs.lifecycle.pool_refill). Safe to run in several processes at once.
`--loop SECONDS` keeps running (development, single-container deployments).
"""

from laborchestrator.periodic import PeriodicCommand
from labs.exceptions import ClusterError
from labs.lifecycle import pool_refill, reconcile


class Command(PeriodicCommand):
    help = "Compare the cluster's lab namespaces with the database and repair the differences."

    def run_once(self) -> None:
        try:
            report = reconcile()
        except ClusterError as error:
            self.stderr.write(f"reconcile: {error.message}")
            return
        for name in report.orphans_deleted:
            self.stdout.write(f"Deleted orphan namespace {name}")
        if report.unlabelled:
            self.stderr.write(
                f"{len(report.unlabelled)} namespace(s) labelled managed-by=laborchestrator carry no "
                f"installation label and are left alone: {', '.join(report.unlabelled)} "
                "(README: 'Several installations on one cluster')"
            )
        for instance_id in report.failed:
            self.stdout.write(f"Marked instance {instance_id} failed")
        for instance_id in report.stopped:
            self.stdout.write(f"Instance {instance_id} stopped")
        for error in report.errors:
            self.stderr.write(error)
        pool = pool_refill()
        if pool.started:
            self.stdout.write(f"Started {len(pool.started)} ready instance(s): {pool.started}")
        if pool.stopped:
            self.stdout.write(f"Stopped {len(pool.stopped)} surplus ready instance(s): {pool.stopped}")
        for error in pool.errors:
            self.stderr.write(error)
