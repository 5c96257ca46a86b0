"""Send queued LTI scores (tutorial progress) to the platforms' gradebooks.

Safe to run in several processes at once: each score is claimed with a conditional UPDATE.
`--loop SECONDS` keeps running (development, a single container); in a cluster a CronJob running it
once a minute does the same. Scores a platform did not take stay queued and are retried with backoff.
"""

from laborchestrator.periodic import PeriodicCommand
from lti.grades import deliver_due


class Command(PeriodicCommand):
    help = "Send queued LTI scores to the platforms, retrying those that failed."

    def run_once(self) -> None:
        deliveries = deliver_due()
        if deliveries:
            counts: dict[str, int] = {}
            for delivery in deliveries:
                counts[delivery.outcome] = counts.get(delivery.outcome, 0) + 1
            summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
            self.stdout.write(f"send_grades: {summary}")
