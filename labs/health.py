"""Readiness of this replica for lab work: the database and the cluster's API server.

The probes' plumbing (their threads, time-outs and the middleware that answers the kubelet) is
laborchestrator.health's; what makes a replica ready is this app's business.
"""

from __future__ import annotations

import threading
import time

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from laborchestrator import health
from labs import cluster

# Seconds a cluster check result is reused: every replica is probed every few seconds, and the API
# server should not feel the probes.
CLUSTER_CACHE_SECONDS = 5.0

_cluster_lock = threading.Lock()
_cluster_cached: tuple[float, str] | None = None


def check_cluster_api(timeout: float = health.CHECK_TIMEOUT) -> None:
    """Raises unless the Kubernetes API server answers GET /version, through labs.cluster."""
    cluster.check_api_server(timeout=timeout)


def cluster_status() -> str:
    """The cluster check's result, reused for CLUSTER_CACHE_SECONDS by every request of this process."""
    global _cluster_cached
    # Held during the check, so concurrent probes wait for one call instead of each making their own.
    with _cluster_lock:
        now = time.monotonic()
        if _cluster_cached is None or now - _cluster_cached[0] >= CLUSTER_CACHE_SECONDS:
            # The margin covers loading the kubeconfig; the request itself times out at CHECK_TIMEOUT.
            check = health.start_check(check_cluster_api)
            result = health.check_outcome("cluster", check, health.CHECK_TIMEOUT + 1)
            _cluster_cached = (time.monotonic(), result)
        return _cluster_cached[1]


def reset_cluster_cache() -> None:
    """Forget the cached cluster result and connection, e.g. after tests point KUBECONFIG elsewhere."""
    global _cluster_cached
    with _cluster_lock:
        _cluster_cached = None
    cluster.reset_client()


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    database = health.start_check(health.check_database)  # runs while the cluster is asked
    results = {
        "cluster": cluster_status(),
        "database": health.check_outcome("database", database, health.CHECK_TIMEOUT),
    }
    ready = all(result == health.OK for result in results.values())
    return JsonResponse(results, status=200 if ready else 503)
