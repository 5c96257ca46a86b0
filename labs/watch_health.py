"""Is the status in the database current? Read from the watcher's heartbeat row (labs.models.ClusterWatch).

One indexed query; no cluster call. Pages, the API, /healthz/cluster and the admin ask this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from labs.models import ClusterWatch

# One cluster connection per installation (KUBECONFIG / in-cluster): one watcher, one row.
CLUSTER_NAME = "default"


@dataclass(frozen=True)
class WatchHealth:
    watcher_alive: bool  # its heartbeat is recent
    in_sync: bool  # alive, and every watch connected and caught up at the last heartbeat
    synced_at: datetime | None
    unreachable_since: datetime | None  # the watcher cannot reach the cluster since then
    last_error: str  # for staff

    def status_as_of(self, observed_at: datetime | None) -> datetime | None:
        """Until when a status the watcher last changed at `observed_at` is known to be true."""
        if self.in_sync and self.synced_at is not None:
            return self.synced_at
        candidates = [t for t in (observed_at, self.synced_at) if t is not None]
        return max(candidates) if candidates else None


def watch_health(now: datetime | None = None) -> WatchHealth:
    now = now or timezone.now()
    row = ClusterWatch.objects.filter(name=CLUSTER_NAME).first()
    if row is None:
        return WatchHealth(False, False, None, None, "The cluster watcher has never run.")
    fresh = now - timedelta(seconds=settings.LABS_WATCH_STALE_SECONDS)
    alive = row.heartbeat_at is not None and row.heartbeat_at >= fresh
    in_sync = alive and row.unreachable_since is None and row.synced_at is not None and row.synced_at >= fresh
    error = row.last_error if alive else "The cluster watcher is not running."
    return WatchHealth(alive, in_sync, row.synced_at, row.unreachable_since if alive else None, error)
