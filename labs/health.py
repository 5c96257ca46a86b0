"""The cluster's health, apart from readiness (laborchestrator/health.py): as the status watcher last
found it (labs.watch_health), so no web process calls the cluster for it.

`/healthz/cluster`: 200 while the watcher is alive and the cluster answers; 503 naming which is not
(for monitoring; never the cluster's address or error text). `/metrics`: the same as Prometheus
gauges, in the text exposition format (a few lines; no client library needed for that).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from labs.watch_health import watch_health


@never_cache
@require_GET
def cluster_health(request: HttpRequest) -> JsonResponse:
    health = watch_health()
    body: dict[str, object] = {
        "watcher": "ok" if health.watcher_alive else "down",
        "cluster": "ok" if health.in_sync else ("unreachable" if health.unreachable_since else "unknown"),
        "unreachable_since": health.unreachable_since.isoformat() if health.unreachable_since else None,
        "synced_at": health.synced_at.isoformat() if health.synced_at else None,
    }
    return JsonResponse(body, status=200 if health.in_sync else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    health = watch_health(now)
    since_sync = (now - health.synced_at).total_seconds() if health.synced_at else -1
    unreachable = (now - health.unreachable_since).total_seconds() if health.unreachable_since else 0
    lines = [
        "# HELP laborchestrator_cluster_up Whether the status watcher is alive and the cluster answers.",
        "# TYPE laborchestrator_cluster_up gauge",
        f"laborchestrator_cluster_up {int(health.in_sync)}",
        "# HELP laborchestrator_cluster_watcher_up Whether the status watcher's heartbeat is recent.",
        "# TYPE laborchestrator_cluster_watcher_up gauge",
        f"laborchestrator_cluster_watcher_up {int(health.watcher_alive)}",
        "# HELP laborchestrator_cluster_status_age_seconds Seconds since last in sync (-1: never).",
        "# TYPE laborchestrator_cluster_status_age_seconds gauge",
        f"laborchestrator_cluster_status_age_seconds {since_sync:.3f}",
        "# HELP laborchestrator_cluster_unreachable_seconds Seconds without an answer (0: it answers).",
        "# TYPE laborchestrator_cluster_unreachable_seconds gauge",
        f"laborchestrator_cluster_unreachable_seconds {unreachable:.3f}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")
