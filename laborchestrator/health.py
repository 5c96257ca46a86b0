"""Health endpoints for the Kubernetes probes.

`/healthz` (liveness) answers as long as the process serves requests; it touches nothing else, so a
database outage does not make Kubernetes restart every replica. `/readyz` (readiness) checks this
process and the database only: a slow or unreachable cluster API degrades starting labs, never
sign-in, the catalog, tutorials, admin or LTI, so it must not take the replicas out of service. The
cluster's health is its own endpoint and metric (labs/health.py), read from the status watcher's
heartbeat. Answers name the failed dependency but never its address or error text: those can carry
credentials, and the endpoints are public. The details go to the log, which redacts secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

OK = "ok"
# Seconds each check may take; below the probe's timeoutSeconds so the view always answers first.
CHECK_TIMEOUT = 2.0

# The checks run in their own threads so a hung connection attempt costs a probe a timeout, not the
# thread that serves every sync view under ASGI. Two workers: a stuck check cannot pile up threads.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")


def check_database() -> None:
    """Raises unless the default database answers `SELECT 1`."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This runs in a pool thread whose connection nothing else would ever close.
        connection.close()


def _outcome(name: str, future: Future[None], timeout: float) -> str:
    try:
        future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()  # if it never started, it never will: probes must not queue up work
        logger.warning("readiness check %s timed out after %ss", name, timeout)
        return "timeout"
    except Exception as error:
        # Failures are expected during outages: one line each, no traceback.
        logger.warning("readiness check %s failed: %s: %s", name, type(error).__name__, error)
        return "unavailable"
    return OK


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": OK})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {"database": _outcome("database", _executor.submit(check_database), CHECK_TIMEOUT)}
    ready = all(result == OK for result in results.values())
    return JsonResponse(results, status=200 if ready else 503)


PROBE_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers the probe paths before anything looks at the Host header.

    The kubelet connects to the pod IP, which is not (and should not be) in ALLOWED_HOSTS, so
    CommonMiddleware would answer 400. Under ASGI the probes run in a thread of their own rather
    than the one thread all sync views share, so a slow page cannot fail the liveness probe.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        view = PROBE_VIEWS.get(request.path_info)
        return view(request) if view else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        view = PROBE_VIEWS.get(request.path_info)
        if view:
            return await sync_to_async(view, thread_sensitive=False)(request)
        return await self.get_response(request)
