"""How many console streams may be open at once, per user and per process.

The per-process limit is counted in this process. The per-user limit is counted here too and, when
REDIS_URL is set (several app processes or replicas), also across all of them in Redis
(`SharedUserStreams`), so a user cannot open N times the limit by landing on N replicas. A
replacement (the same user reopening the same machine's console in a new tab) is not a new stream
for the per-user count, since it kicks the old one off a moment later.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import redis.asyncio
from django.conf import settings

StreamKey = tuple[int, str, str]  # (instance id, machine name, kind)


def user_limit_message(limit: int) -> str:
    return f"You may have {limit} consoles open at a time; close one first."


class LimitReached(Exception):
    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope  # "user" or "process"


@dataclass
class StreamLimits:
    total: int = 0
    per_user: dict[int, Counter[StreamKey]] = field(default_factory=dict)

    def acquire(self, *, user_id: int, key: StreamKey) -> None:
        """Count one more stream, or raise LimitReached (counting nothing)."""
        if self.total >= settings.CONSOLE_MAX_STREAMS_PROCESS:
            raise LimitReached("This server has too many open consoles; try again shortly.", scope="process")
        mine = self.per_user.get(user_id, Counter())
        limit = settings.CONSOLE_MAX_STREAMS_PER_USER
        if key not in mine and len(mine) >= limit:
            raise LimitReached(user_limit_message(limit), scope="user")
        mine[key] += 1
        self.per_user[user_id] = mine
        self.total += 1

    def release(self, *, user_id: int, key: StreamKey) -> None:
        mine = self.per_user.get(user_id)
        if mine is None or mine[key] <= 0:
            return
        mine[key] -= 1
        if mine[key] == 0:
            del mine[key]
        if not mine:
            del self.per_user[user_id]
        self.total -= 1


# The process's streams: the consumers of one process share one event loop, so no lock is needed.
stream_limits = StreamLimits()


class SharedUserStreams:
    """Per-user stream counts shared by every app process, in Redis.

    Each open stream holds a lease: a member "<instance>:<machine>:<kind>|<random>" of the user's
    sorted set, scored with its expiry time. A stream refreshes its lease while it is open (the
    relay's watchdog, at least every minute) and removes it when it ends; a process that dies
    without removing its leases loses them when they expire, so a crash frees the places within
    `lease_seconds`. Acquiring is one Lua script, so two replicas cannot both take the last place.
    """

    ACQUIRE = """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    local streams, count = {}, 0
    for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
      local stream = string.match(member, '^(.*)|')
      if stream and not streams[stream] then streams[stream] = true; count = count + 1 end
    end
    if not streams[ARGV[3]] and count >= tonumber(ARGV[5]) then return 0 end
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3] .. '|' .. ARGV[4])
    redis.call('EXPIRE', KEYS[1], ARGV[6])
    return 1
    """

    def __init__(
        self, url: str, *, lease_seconds: int = 180, prefix: str = "laborchestrator:console-streams"
    ) -> None:
        self.client = redis.asyncio.Redis.from_url(url)
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self._acquire = self.client.register_script(self.ACQUIRE)

    def _key(self, user_id: int) -> str:
        return f"{self.prefix}:{user_id}"

    async def acquire(self, *, user_id: int, key: StreamKey, limit: int) -> str:
        """A lease for one more stream of the user's, or LimitReached."""
        stream, lease = ":".join(map(str, key)), uuid.uuid4().hex
        now = time.time()
        taken = await self._acquire(
            keys=[self._key(user_id)],
            args=[now, now + self.lease_seconds, stream, lease, limit, self.lease_seconds],
        )
        if not taken:
            raise LimitReached(user_limit_message(limit), scope="user")
        return f"{stream}|{lease}"

    async def refresh(self, *, user_id: int, lease: str) -> None:
        key = self._key(user_id)
        async with self.client.pipeline(transaction=False) as both:  # one round trip
            both.zadd(key, {lease: time.time() + self.lease_seconds}, xx=True)
            both.expire(key, self.lease_seconds)
            await both.execute()

    async def release(self, *, user_id: int, lease: str) -> None:
        await self.client.zrem(self._key(user_id), lease)


# A redis.asyncio client belongs to the event loop it was made in: one per loop (the app server has one).
_shared: tuple[asyncio.AbstractEventLoop, SharedUserStreams] | None = None


def shared_user_streams() -> SharedUserStreams | None:
    """This event loop's client of the shared counts; None without REDIS_URL (one process)."""
    global _shared
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    if _shared is None or _shared[0] is not loop:
        _shared = (loop, SharedUserStreams(settings.REDIS_URL))
    return _shared[1]
