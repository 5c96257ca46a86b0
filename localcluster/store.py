"""In-memory object storage with one global resourceVersion counter and a watch event log.

Everything runs on one asyncio loop and no method awaits, so each change is atomic: a watcher that
reads the log and subscribes in the same step can never miss or repeat an event.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from localcluster.resources import ResourceType

Obj = dict[str, Any]


def now_timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    resource: ResourceType
    namespace: str
    object: Obj
    # The object before a MODIFIED change, so a filtered watch can turn "stopped matching the
    # selector" into DELETED and "started matching" into ADDED, as the real watch cache does.
    previous: Obj | None = None


class Expired(Exception):
    """The requested resourceVersion is older than the event history kept (HTTP 410 Gone)."""


@dataclass
class Subscription:
    resource: ResourceType
    namespace: str | None
    queue: asyncio.Queue[WatchEvent] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self, history: int = 10000) -> None:
        self._rv = 1
        self._objects: dict[ResourceType, dict[tuple[str, str], Obj]] = {}
        self._log: deque[WatchEvent] = deque(maxlen=history)
        self._subscriptions: list[Subscription] = []

    @property
    def resource_version(self) -> int:
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _table(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rt, {})

    # -- reads: callers get copies so they can never change stored state by accident
    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        obj = self._table(rt).get((namespace, name))
        return clone(obj) if obj is not None else None

    def exists(self, rt: ResourceType, namespace: str, name: str) -> bool:
        return (namespace, name) in self._table(rt)

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        return [clone(obj) for obj in self._iter(rt, namespace)]

    def _iter(self, rt: ResourceType, namespace: str | None) -> Iterator[Obj]:
        for (ns, _name), obj in sorted(self._table(rt).items()):
            if namespace is None or ns == namespace:
                yield obj

    def count(self, rt: ResourceType, namespace: str) -> int:
        return sum(1 for _ in self._iter(rt, namespace))

    # -- writes
    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        meta["resourceVersion"] = str(self._next_rv())
        stored = clone(obj)
        self._table(rt)[(namespace, meta["name"])] = stored
        # Stored objects are never changed in place (every write stores a new one), so the
        # watch event can share the stored snapshot.
        self._emit(WatchEvent(self._rv, "ADDED", rt, namespace, stored))
        return clone(stored)

    def replace(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        key = (namespace, meta["name"])
        previous = self._table(rt)[key]
        meta["resourceVersion"] = str(self._next_rv())
        stored = clone(obj)
        self._table(rt)[key] = stored
        self._emit(WatchEvent(self._rv, "MODIFIED", rt, namespace, stored, previous))
        return clone(stored)

    def remove(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        previous = self._table(rt).pop((namespace, name))
        # The DELETED event carries a fresh resourceVersion, like etcd's delete revision. A new
        # snapshot, because earlier events share the previous one.
        stored = {**previous, "metadata": {**previous["metadata"], "resourceVersion": str(self._next_rv())}}
        self._emit(WatchEvent(self._rv, "DELETED", rt, namespace, stored))
        return clone(stored)

    # -- watches
    def _emit(self, event: WatchEvent) -> None:
        self._log.append(event)
        for sub in self._subscriptions:
            if sub.resource is event.resource and sub.namespace in (None, event.namespace):
                sub.queue.put_nowait(event)

    def subscribe(
        self, rt: ResourceType, namespace: str | None, since: int | None
    ) -> tuple[list[WatchEvent], Subscription]:
        """Past events after `since` (none when `since` is None) and a subscription for later ones."""
        backlog: list[WatchEvent] = []
        if since is not None:
            oldest = self._log[0].resource_version if self._log else self._rv + 1
            # Anything between `since` and the first kept event may have been dropped.
            if since < oldest - 1 and since < self._rv:
                raise Expired(f"too old resource version: {since} ({oldest - 1})")
            backlog = [
                e
                for e in self._log
                if e.resource_version > since and e.resource is rt and namespace in (None, e.namespace)
            ]
        sub = Subscription(rt, namespace)
        self._subscriptions.append(sub)
        return backlog, sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)


def clone(obj: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists, scalars): several times faster than
    `copy.deepcopy`, which the API server's every read and write would otherwise spend its time in."""
    if isinstance(obj, dict):
        return {key: clone(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [clone(value) for value in obj]
    return obj
