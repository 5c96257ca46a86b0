"""Injected faults and the call log, for the application's reliability tests and benchmarks.

All faults are off by default and set through the admin-only control API (`/localcluster/v1/...`,
see `server.py`) or `FaultControl` in `harness.py`:

- latency: every API request waits `ms` ± `jitter_ms` before it is served;
- fail: the next `times` requests (None = all) matching verb and resource answer `status` without
  touching state (a Status with the reason a real server gives for that code);
- hang: matching requests wait `seconds` first, then are served normally (so a client timeout fires);
  a client that gave up meanwhile finds nothing done, as when an API server's handler ends with the
  request's context;
- late_commit: like hang, but the request is carried out even if the client has gone: an API server
  runs the storage call of a create in its own goroutine, which goes on after the request's context
  ended (asyncFinisher in k8s.io/apiserver/pkg/endpoints/handlers/finisher/finisher.go), so an
  object can appear after the client's timeout;
- drop_watch: the next watch on a resource is cut mid-stream, without a clean end, after N events;
- drop_websocket: the next console/vnc/portforward websocket is cut after N bytes from the guest;
- missing_image: pulling this image reference fails as a registry without it answers (ErrImagePull);
- node: the node's allocatable `memory` and/or `cpu` (a small node: launcher pods that do not fit
  stay unschedulable, as the scheduler leaves them).
- pause_condition_delay: a slower virt-handler: the `Paused` condition follows a pause or unpause
  this long after the answer (instead of the server's `--pause-condition-delay-ms`).

Verbs are Kubernetes verbs (get, list, watch, create, update, patch, delete); resources are plurals,
optionally with a subresource (`virtualmachineinstances/pause`); `*` matches any.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from localcluster.errors import ApiError
from localcluster.quota import format_quantity, parse_quantity

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class CallRule:
    verb: str
    resource: str
    times: int | None  # None: forever
    status: int = 500
    seconds: float = 0.0

    def matches(self, verb: str, resource: str) -> bool:
        return self.verb in ("*", verb) and self.resource in ("*", resource)


@dataclass
class DropRule:
    target: str  # a resource plural for watches, "console", "vnc" or "portforward" for websockets
    after: int
    times: int | None = 1


# The call log keeps the most recent calls only: `make run` serves for days, and tests look at the
# calls of one test (they clear the log first).
CALL_LOG_LIMIT = 10_000


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    failures: list[CallRule] = field(default_factory=list)
    hangs: list[CallRule] = field(default_factory=list)
    late_commits: list[CallRule] = field(default_factory=list)
    watch_drops: list[DropRule] = field(default_factory=list)
    websocket_drops: list[DropRule] = field(default_factory=list)
    missing_images: set[str] = field(default_factory=set)
    node_allocatable: dict[str, Fraction] = field(default_factory=dict)
    pause_condition_delay_ms: float | None = None
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG_LIMIT))

    def clear(self) -> None:
        self.latency_ms = self.jitter_ms = 0.0
        self.failures.clear()
        self.hangs.clear()
        self.late_commits.clear()
        self.watch_drops.clear()
        self.websocket_drops.clear()
        self.missing_images.clear()
        self.node_allocatable.clear()
        self.pause_condition_delay_ms = None

    def delay(self) -> float:
        """Seconds to wait before serving a request."""
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        return max(0.0, self.latency_ms + random.uniform(-self.jitter_ms, self.jitter_ms)) / 1000  # noqa: S311

    @staticmethod
    def _take(rules: list[Any], predicate: Any) -> Any:
        for rule in rules:
            if predicate(rule):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        rules.remove(rule)
                return rule
        return None

    def take_hang(self, verb: str, resource: str) -> float:
        rule = self._take(self.hangs, lambda r: r.matches(verb, resource))
        return rule.seconds if rule else 0.0

    def take_late_commit(self, verb: str, resource: str) -> float:
        rule = self._take(self.late_commits, lambda r: r.matches(verb, resource))
        return rule.seconds if rule else 0.0

    def take_failure(self, verb: str, resource: str) -> ApiError | None:
        rule = self._take(self.failures, lambda r: r.matches(verb, resource))
        if rule is None:
            return None
        reason = REASONS.get(rule.status, "InternalError")
        error = ApiError(
            rule.status, reason, f"localcluster injected fault: {verb} {resource} answers {rule.status}"
        )
        if rule.status in (429, 503):
            error.retry_after = 1
            error.headers["Retry-After"] = "1"
        return error

    def take_watch_drop(self, resource: str) -> int | None:
        rule = self._take(self.watch_drops, lambda r: r.target in ("*", resource))
        return rule.after if rule else None

    def pause_condition_delay(self) -> float | None:
        """Seconds until a Paused condition follows a pause, when a test set it; None: the default."""
        return None if self.pause_condition_delay_ms is None else self.pause_condition_delay_ms / 1000

    def take_websocket_drop(self, kind: str) -> int | None:
        rule = self._take(self.websocket_drops, lambda r: r.target in ("*", kind))
        return rule.after if rule else None

    def describe(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "fail": [asdict(r) for r in self.failures],
            "hang": [asdict(r) for r in self.hangs],
            "late_commit": [asdict(r) for r in self.late_commits],
            "drop_watch": [asdict(r) for r in self.watch_drops],
            "drop_websocket": [asdict(r) for r in self.websocket_drops],
            "missing_images": sorted(self.missing_images),
            "node": {k: format_quantity(v, k) for k, v in self.node_allocatable.items()},
            "pause_condition_delay_ms": self.pause_condition_delay_ms,
        }

    # -- the control API's request bodies ----------------------------------------------------------
    def configure(self, fault: str, spec: dict[str, Any]) -> None:
        try:
            if fault == "latency":
                self.latency_ms = float(spec.get("ms", 0))
                self.jitter_ms = float(spec.get("jitter_ms", 0))
            elif fault == "fail":
                self.failures.append(
                    CallRule(
                        str(spec["verb"]),
                        str(spec["resource"]),
                        _times(spec),
                        status=int(spec.get("status", 500)),
                    )
                )
            elif fault in ("hang", "late-commit"):
                rules = self.hangs if fault == "hang" else self.late_commits
                rules.append(
                    CallRule(
                        str(spec["verb"]), str(spec["resource"]), _times(spec), seconds=float(spec["seconds"])
                    )
                )
            elif fault == "drop-watch":
                self.watch_drops.append(
                    DropRule(str(spec["resource"]), int(spec.get("after_events", 0)), _times(spec))
                )
            elif fault == "drop-websocket":
                kind = str(spec.get("kind", "*"))
                if kind not in ("console", "vnc", "portforward", "*"):
                    raise ValueError("kind must be console, vnc or portforward")
                self.websocket_drops.append(DropRule(kind, int(spec.get("after_bytes", 0)), _times(spec)))
            elif fault == "missing-image":
                self.missing_images.add(str(spec["image"]))
            elif fault == "node":
                for resource in ("cpu", "memory"):
                    if resource in spec:
                        self.node_allocatable[resource] = parse_quantity(spec[resource])
            elif fault == "pause-condition-delay":
                milliseconds = float(spec["ms"])
                if not 0 <= milliseconds <= 600_000:
                    raise ValueError("ms must be between 0 and 600000")
                self.pause_condition_delay_ms = milliseconds
            else:
                raise ApiError(404, "NotFound", f"unknown fault {fault!r}")
        except (KeyError, ValueError, TypeError) as exc:
            raise ApiError(400, "BadRequest", f"bad fault specification for {fault}: {exc}") from exc


def _times(spec: dict[str, Any]) -> int | None:
    times = spec.get("times", 1)
    return None if times is None else int(times)
