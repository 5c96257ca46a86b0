"""Health endpoints for the Kubernetes probes, and the checks they are made of.

`/healthz` (liveness) answers as long as the process serves requests; it touches nothing else, so a
database outage does not make Kubernetes restart every replica. `/readyz` (readiness, labs.health)
checks the database and the cluster API, so a replica that cannot do its work gets no traffic.
Answers name the failed dependency but never its address or error text: those can carry
credentials, and the endpoints are public. The details go to the log, which redacts secrets.

This module imports no app: the URL configuration names the probe views, and the middleware finds
them there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import resolve
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


def start_check(check: Callable[[], None]) -> Future[None]:
    """Run a check in the probes' own threads; `check_outcome` waits for its answer."""
    return _executor.submit(check)


def check_outcome(name: str, future: Future[None], timeout: float) -> str:
    """`ok`, `timeout` or `unavailable`; the reason goes to the log only."""
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


# The paths the kubelet probes (deploy/k8s/deployment.yaml); their views are the URL configuration's.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def probe_view(path: str) -> Callable[[HttpRequest], HttpResponse] | None:
    return resolve(path).func if path in PROBE_PATHS else None


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
        view = probe_view(request.path_info)
        return view(request) if view else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        view = probe_view(request.path_info)
        if view:
            return await sync_to_async(view, thread_sensitive=False)(request)
        return await self.get_response(request)
