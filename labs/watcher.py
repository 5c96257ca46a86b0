"""Status from a watch: one watcher per cluster writes every instance's and machine's status to the
database, so pages and the API read only the database (as kubespawner's reflector feeds `poll()`).

One thread per watched kind lists the kind once (this installation's labels only), then watches it
from the list's resourceVersion, resuming from the last one seen (bookmarks included) each time a
watch ends. A 410 Gone (history too old) re-lists; any other failure reconnects with exponential
backoff and a fresh list. These threads only fill an in-memory view of the cluster and mark the lab
namespaces whose objects changed; they never touch the database.

`apply_pending()` turns the marked namespaces into status changes through `labs.lifecycle` (the one
writer of status). The management command `watch_cluster` runs it in a loop with a heartbeat
(labs.models.ClusterWatch) and a cheap probe of the API server; tests call it from their own thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from labs import cluster, lifecycle, manifests
from labs.exceptions import ClusterError, ClusterExpired
from labs.installation import installation_id
from labs.models import ClusterWatch, LabInstance
from labs.watch_health import CLUSTER_NAME

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


def _metadata(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


@dataclass(frozen=True)
class WatchedKind:
    """A kind the watcher follows: its plural (labs.cluster.WATCHABLE_LISTS) and the lab namespace
    each object belongs to. Pods for container labs are one more row."""

    plural: str
    lab_namespace: Callable[[Obj], str]


WATCHED_KINDS: tuple[WatchedKind, ...] = (
    WatchedKind("namespaces", lambda obj: _metadata(obj).get("name") or ""),
    WatchedKind(cluster.VMI_PLURAL, lambda obj: _metadata(obj).get("namespace") or ""),
    WatchedKind("pods", lambda obj: _metadata(obj).get("namespace") or ""),
)


@dataclass
class _KindState:
    kind: WatchedKind
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)  # (namespace, name) -> object
    resource_version: str = ""
    synced: bool = False  # listed at least once
    healthy: bool = False  # the last list or watch succeeded
    lists: int = 0
    watches: int = 0


class ClusterWatcher:
    def __init__(
        self,
        *,
        kinds: tuple[WatchedKind, ...] = WATCHED_KINDS,
        on_heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.on_heartbeat = on_heartbeat
        self.selector = manifests.installation_selector(installation_id())
        self._states = {kind.plural: _KindState(kind) for kind in kinds}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._dirty: set[str] = set()
        # Namespaces seen deleted: "gone" is only ever concluded from the cluster's own word, never
        # from a namespace not seen yet (a start's namespace may be created a moment before its event).
        self._deleted: set[str] = set()
        self._stopping = threading.Event()
        self._watches: dict[str, cluster.KindWatch] = {}
        self._threads: list[threading.Thread] = []
        self.last_error = ""
        self.error_since: datetime | None = None

    # -- the kind threads ------------------------------------------------------------------------
    def start(self) -> None:
        for plural in self._states:
            thread = threading.Thread(
                target=self._follow, args=(plural,), name=f"watch-{plural}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            watches = list(self._watches.values())
            self._changed.notify_all()
        for kind_watch in watches:
            kind_watch.stop()
        for thread in self._threads:
            thread.join(timeout)

    def reconnect(self) -> None:
        """End every current watch (they resume from their resourceVersion): after the probe found
        the cluster unreachable, a watch may be stuck on a dead connection."""
        with self._lock:
            watches = list(self._watches.values())
        for kind_watch in watches:
            kind_watch.stop()

    def _follow(self, plural: str) -> None:
        state = self._states[plural]
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                if not state.resource_version:
                    self._relist(state)
                self._watch_once(state)
                backoff = 0.0
            except ClusterExpired:
                logger.info("Watch of %s expired (410 Gone); listing again.", plural)
                state.resource_version = ""
            except ClusterError as error:
                if self._stopping.is_set():
                    return  # `stop()` cut the connection
                self._failed(state, error.message)
                # Like client-go's reflector: after a failure, list again rather than resume. The
                # list proves the connection at once, and catches a cluster whose history restarted.
                state.resource_version = ""
                backoff = min(max(backoff * 2, 0.5), settings.LABS_WATCH_MAX_BACKOFF_SECONDS)
                # Jitter, so the watchers of several installations do not reconnect in step.
                self._stopping.wait(backoff * random.uniform(0.75, 1.0))  # noqa: S311 (jitter, not a secret)
            except Exception:  # a bug must not end the thread: the watcher would go silent
                logger.exception("Watch of %s failed unexpectedly", plural)
                self._failed(state, "unexpected error (see the log)")
                self._stopping.wait(settings.LABS_WATCH_MAX_BACKOFF_SECONDS)

    def _failed(self, state: _KindState, message: str) -> None:
        with self._lock:
            state.healthy = False
            if self.error_since is None:  # an outage is told by its first error
                self.error_since = timezone.now()
                self.last_error = message
        logger.warning("Watching %s: %s", state.kind.plural, message)

    def _relist(self, state: _KindState) -> None:
        items, resource_version = cluster.list_for_watch(state.kind.plural, label_selector=self.selector)
        objects = {(_metadata(o).get("namespace") or "", _metadata(o).get("name") or ""): o for o in items}
        with self._lock:
            before = state.objects
            if state.kind.plural == "namespaces":
                # Gone while we were not watching: their DELETED event was never seen.
                self._deleted |= {name for (_, name) in before.keys() - objects.keys()}
                self._deleted -= {name for (_, name) in objects}
            self._dirty |= {state.kind.lab_namespace(o) for o in [*before.values(), *objects.values()]}
            state.objects, state.resource_version = objects, resource_version
            state.synced = state.healthy = True
            state.lists += 1
            self._changed.notify_all()

    def _watch_once(self, state: _KindState) -> None:
        kind_watch = cluster.KindWatch(state.kind.plural, label_selector=self.selector)
        with self._lock:
            self._watches[state.kind.plural] = kind_watch
            state.watches += 1
        try:
            events = kind_watch.events(
                resource_version=state.resource_version, timeout_seconds=settings.LABS_WATCH_TIMEOUT_SECONDS
            )
            for event_type, obj in events:
                self._apply_event(state, event_type, obj)
                if self._stopping.is_set():
                    kind_watch.stop()
        finally:
            with self._lock:
                self._watches.pop(state.kind.plural, None)
        with self._lock:
            state.healthy = True  # ended at its timeout (or by `reconnect`): resume from where it was

    def _apply_event(self, state: _KindState, event_type: str, obj: Obj) -> None:
        meta = _metadata(obj)
        with self._lock:
            if meta.get("resourceVersion"):
                state.resource_version = str(meta["resourceVersion"])
            state.healthy = True
            if event_type == "BOOKMARK":
                return
            key = (meta.get("namespace") or "", meta.get("name") or "")
            if event_type == "DELETED":
                state.objects.pop(key, None)
                if state.kind.plural == "namespaces":
                    self._deleted.add(key[1])
            else:
                state.objects[key] = obj
                if state.kind.plural == "namespaces":
                    self._deleted.discard(key[1])
            self._dirty.add(state.kind.lab_namespace(obj))
            self._changed.notify_all()

    # -- what the threads know -------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        with self._lock:
            return all(s.synced for s in self._states.values())

    @property
    def healthy(self) -> bool:
        with self._lock:
            return all(s.synced and s.healthy for s in self._states.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """Requests made per kind: lists and watches (for tests and the class benchmark)."""
        with self._lock:
            return {p: {"lists": s.lists, "watches": s.watches} for p, s in self._states.items()}

    def wait_for_change(self, timeout: float) -> None:
        with self._lock:
            if not self._dirty:
                self._changed.wait(timeout)

    def _namespace_view(
        self, namespace: str
    ) -> tuple[bool, cluster.NamespaceInfo | None, list[Obj], list[Obj]]:
        """(known, the namespace or None if deleted, its VMIs, its Pods); unknown: never seen either way."""
        namespaces = self._states["namespaces"].objects
        vmis = self._states[cluster.VMI_PLURAL].objects
        found = namespaces.get(("", namespace))
        machines = [obj for (ns, _), obj in vmis.items() if ns == namespace]
        pods = [obj for (ns, _), obj in self._states["pods"].objects.items() if ns == namespace]
        if found is None:
            return namespace in self._deleted, None, machines, pods
        status = found.get("status") or {}
        info = cluster.NamespaceInfo(
            name=namespace,
            labels=dict(_metadata(found).get("labels") or {}),
            phase=status.get("phase") or "Active",
        )
        return True, info, machines, pods

    # -- writing status --------------------------------------------------------------------------
    def mark_all_active(self) -> None:
        """Re-derive every active instance's status at the next `apply_pending` (a resync: pause
        confirmations and time-outs that no event announces)."""
        names = LabInstance.objects.active().exclude(namespace=None).values_list("namespace", flat=True)
        with self._lock:
            self._dirty |= set(names)

    def apply_pending(self) -> int:
        """Record what changed in the marked namespaces through labs.lifecycle; the number of
        instances looked at. Nothing before every kind is listed: a half-known cluster is not a view."""
        with self._lock:
            if not all(s.synced for s in self._states.values()) or not self._dirty:
                return 0
            dirty, self._dirty = self._dirty, set()
        instances = list(
            LabInstance.objects.active()
            .filter(namespace__in=dirty)
            .select_related("lab")
            .prefetch_related("machines")
        )
        looked_at = 0
        for instance in instances:
            with self._lock:
                known, namespace, vmis, pods = self._namespace_view(instance.namespace)
            if not known:
                continue  # its namespace event is on its way; it marks the namespace again
            vmis = [
                v
                for v in vmis
                if (_metadata(v).get("labels") or {}).get(manifests.INSTANCE_LABEL) == str(instance.pk)
            ]
            containers = {m.name for m in instance.machines.all() if m.kind == "container"}
            pods = [
                p
                for p in pods
                if _metadata(p).get("name") in containers
                and (_metadata(p).get("labels") or {}).get(manifests.INSTANCE_LABEL) == str(instance.pk)
            ]
            try:
                lifecycle.instance_observe(instance=instance, vmis=vmis, namespace=namespace, pods=pods)
            except ClusterError as error:  # only the deletes of failed instances call the cluster
                logger.warning("Recording the status of instance %s: %s", instance.pk, error.message)
            looked_at += 1
        with self._lock:
            self._deleted -= dirty - {i.namespace for i in instances}
        return looked_at

    # -- the housekeeping loop -------------------------------------------------------------------
    def heartbeat(self, *, probe: bool = True) -> None:
        """Record that the watcher lives, whether it is in sync, and since when the cluster is
        unreachable. The probe (GET /version, the same as the readiness check used) finds a dead
        connection sooner than a watch that has nothing to say."""
        if probe:
            try:
                cluster.check_api_server(timeout=min(settings.KUBE_REQUEST_TIMEOUT, 5.0))
            except ClusterError as error:
                with self._lock:
                    self.last_error = error.message
                    if self.error_since is None:
                        self.error_since = timezone.now()
                self.reconnect()
            else:
                with self._lock:
                    if self.healthy_unlocked():
                        self.error_since = None
                        self.last_error = ""
        now = timezone.now()
        with self._lock:
            in_sync = self.healthy_unlocked() and self.error_since is None
            fields = {
                "heartbeat_at": now,
                "unreachable_since": self.error_since,
                "last_error": self.last_error[:2000],
            }
        if in_sync:
            fields["synced_at"] = now
        ClusterWatch.objects.update_or_create(name=CLUSTER_NAME, defaults=fields)
        if self.on_heartbeat is not None:
            self.on_heartbeat()

    def healthy_unlocked(self) -> bool:
        return all(s.synced and s.healthy for s in self._states.values())

    def run(self, *, until: Callable[[], bool] = lambda: False) -> None:
        """Watch, write status and beat until `until()` or `stop()`: the `watch_cluster` command."""
        self.start()
        next_beat = next_resync = 0.0
        try:
            while not self._stopping.is_set() and not until():
                now = time.monotonic()
                try:
                    if now >= next_beat:
                        self.heartbeat()
                        next_beat = now + settings.LABS_WATCH_HEARTBEAT_SECONDS
                    if now >= next_resync:
                        self.mark_all_active()
                        next_resync = now + settings.LABS_WATCH_RESYNC_SECONDS
                    self.apply_pending()
                except Exception:  # the database may be away for a moment; the views stay in memory
                    logger.exception("Writing watched status failed; trying again")
                    close_old_connections()
                    self._stopping.wait(1.0)
                self.wait_for_change(timeout=max(0.05, min(next_beat, next_resync) - time.monotonic()))
        finally:
            self.stop()
