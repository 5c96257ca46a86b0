"""How many console streams may be open at once, per user and per process.

Counted in this process only: each Daphne process enforces the limits on the streams it serves,
so with N replicas a user may hold up to N times the per-user limit. A replacement (the same user
reopening the same machine's console in a new tab) is not a new stream for the per-user count,
since it kicks the old one off a moment later.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings

StreamKey = tuple[int, str, str]  # (instance id, machine name, kind)


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
            message = f"You may have {limit} consoles open at a time; close one first."
            raise LimitReached(message, scope="user")
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
