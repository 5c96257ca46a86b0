"""Rate limits that hold under parallel requests: sliding windows, checked and counted atomically.

A rate "N/period" allows N events in any window of that length. Taking a place is one atomic step
(check every window the request falls under, then count it in all of them, or in none), so parallel
requests, in one process or in several, can never pass more than N. DRF's own throttles read their
history and write it back in two steps, and parallel requests all passed between them.

Where the counts live:
- with REDIS_URL (several app processes or replicas): in Redis, one sorted set of timestamps per
  key, changed only by a Lua script, which Redis runs atomically; timestamps come from Redis's
  clock, so the processes' clocks need not agree;
- without it (one process, as `make run`): in this process, under one lock.

A place can be given back (`RateLimitPlace.give_back`): a sign-in counts failures only, so it
takes a place before the password is checked and gives it back when the password was right.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RateLimited(Exception):
    """Refused by a rate limit; `wait` is the number of seconds until a place is free.

    `reason` says what was limited; `message` adds when to try again.
    """

    def __init__(self, wait: float, reason: str = "Too many requests.") -> None:
        self.wait = wait
        self.reason = reason
        self.message = f"{reason} Try again in {_duration(wait)}."
        super().__init__(self.message)


def _duration(seconds: float) -> str:
    whole = max(math.ceil(seconds), 1)
    if whole < 60:
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class Rate:
    limit: int
    window: float  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        """ "30/hour", "60/minute", "10/15min", "5/30s": N events per (multiple of a) unit."""
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"Not a rate: {text!r}. Write <count>/<period>, e.g. 30/hour or 10/15min.")
        count, multiple, unit = match.groups()
        return cls(limit=int(count), window=int(multiple or 1) * _UNIT_SECONDS[unit[0]])


@dataclass(frozen=True)
class Limit:
    """One window a request counts in: `key` names whose events are counted (a user, an address)."""

    key: str
    rate: Rate


@dataclass
class RateLimitPlace:
    """A counted event; give it back to uncount it (e.g. a sign-in whose password was right)."""

    store: LocalRateStore | RedisRateStore
    keys: tuple[str, ...]
    member: str

    def give_back(self) -> None:
        self.store.remove(self.keys, self.member)


class LocalRateStore:
    """The counts of this process, under one lock (threads of one process: `make run`, tests)."""

    # Keys that have seen no event for this long are dropped when the table is swept.
    SWEEP_EVERY = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, deque[tuple[float, str]]] = {}
        self._windows: dict[str, float] = {}
        self._takes = 0

    def take(self, limits: Sequence[Limit], member: str) -> float:
        """Count `member` in every limit and return 0, or count nothing and return the wait."""
        with self._lock:
            now = time.monotonic()
            wait = 0.0
            for limit in limits:
                events = self._current(limit.key, limit.rate.window, now)
                if len(events) >= limit.rate.limit:
                    wait = max(wait, events[-limit.rate.limit][0] + limit.rate.window - now)
            if wait > 0:
                return wait
            for limit in limits:
                self._events.setdefault(limit.key, deque()).append((now, member))
                self._windows[limit.key] = max(self._windows.get(limit.key, 0.0), limit.rate.window)
            self._takes += 1
            if self._takes % self.SWEEP_EVERY == 0:
                self._sweep(now)
            return 0.0

    def remove(self, keys: Sequence[str], member: str) -> None:
        with self._lock:
            for key in keys:
                events = self._events.get(key)
                if events is not None:
                    self._events[key] = deque(event for event in events if event[1] != member)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._windows.clear()

    def _current(self, key: str, window: float, now: float) -> deque[tuple[float, str]]:
        events = self._events.get(key) or deque()
        while events and events[0][0] <= now - window:
            events.popleft()
        return events

    def _sweep(self, now: float) -> None:
        for key in list(self._events):
            if not self._current(key, self._windows.get(key, 0.0), now):
                del self._events[key]
                self._windows.pop(key, None)


class RedisRateStore:
    """The counts of every process, in Redis; one script call per check, atomic in Redis."""

    # KEYS: the sorted sets; ARGV: member, then limit and window (ms) per key. Returns the wait in
    # ms (0: counted everywhere).
    TAKE = """
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local wait = 0
    for i, key in ipairs(KEYS) do
      local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
      if redis.call('ZCARD', key) >= limit then
        local oldest = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
        wait = math.max(wait, tonumber(oldest[2]) + window - now, 1)
      end
    end
    if wait > 0 then return wait end
    for i, key in ipairs(KEYS) do
      redis.call('ZADD', key, now, ARGV[1])
      redis.call('PEXPIRE', key, ARGV[2 * i + 1])
    end
    return 0
    """

    def __init__(self, url: str, prefix: str = "laborchestrator:rate:") -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = prefix
        self._take = self.client.register_script(self.TAKE)

    def take(self, limits: Sequence[Limit], member: str) -> float:
        args: list[object] = [member]
        for limit in limits:
            args += [limit.rate.limit, math.ceil(limit.rate.window * 1000)]
        wait_ms = self._take(keys=[self.prefix + limit.key for limit in limits], args=args)
        return int(wait_ms) / 1000

    def remove(self, keys: Sequence[str], member: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(self.prefix + key, member)
            pipe.execute()


local_store = LocalRateStore()
_redis_stores: dict[str, RedisRateStore] = {}
_redis_stores_lock = threading.Lock()


def rate_store() -> LocalRateStore | RedisRateStore:
    """Redis when REDIS_URL is set (shared by every process), else this process's own counts."""
    url = settings.REDIS_URL
    if not url:
        return local_store
    with _redis_stores_lock:
        if url not in _redis_stores:
            _redis_stores[url] = RedisRateStore(url)
        return _redis_stores[url]


def take_place(limits: Sequence[Limit]) -> RateLimitPlace:
    """Count one event in every limit, or raise RateLimited (counting nothing).

    A Redis that cannot be reached raises redis.RedisError: callers decide whether to fail open.
    """
    store = rate_store()
    member = uuid.uuid4().hex
    wait = store.take(limits, member) if limits else 0.0
    if wait > 0:
        raise RateLimited(wait)
    return RateLimitPlace(store=store, keys=tuple(limit.key for limit in limits), member=member)


class RateLimitedMiddleware:
    """A page whose request a rate limit refused (e.g. a throttled sign-in form) answers 429 with
    Retry-After and the reason, instead of a 500. The API answers its own 429 (DRF's Throttled)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RateLimited):
            return None
        context = {"message": exception.message, "back": request.get_full_path()}
        response = render(request, "429.html", context, status=429)
        response["Retry-After"] = str(math.ceil(exception.wait))
        return response
