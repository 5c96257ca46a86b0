"""The console proxy: a student's noVNC or xterm.js websocket relayed to their machine's KubeVirt
`vnc` or `console` websocket.

Every refusal is an accepted-then-closed websocket (a refused handshake reaches the browser's script
as a bare 1006), with one close code per cause:

| code | reason sent (example)                     | when                                                   |
| ---- | ----------------------------------------- | ------------------------------------------------------ |
| 1000 |                                           | the browser closed the stream                          |
| 4001 | Replaced by a newer connection to this... | the same stream (instance, machine, kind) was opened   |
|      |                                           | again, in any process; the newer one wins              |
| 4401 | Not signed in. / Console ticket refused.  | no session user and no ticket; the ticket is unknown,  |
|      |                                           | reused, expired, for another console, or its user may  |
|      |                                           | no longer use the instance; an inactive user; no       |
|      |                                           | Origin header and no ticket (cookies are ignored then) |
| 4403 | This lab instance is not yours.           | signed in, but neither the owner nor staff             |
|      | Consoles can only be opened from this ... | the Origin is not one of the site's (origin.py)        |
| 4404 | No such machine in this lab instance.     | unknown instance or machine, or no console of the kind;|
|      |                                           | a websocket path that is not a console's               |
| 4408 | Closed after N min without activity.      | no bytes either way for CONSOLE_IDLE_TIMEOUT_SECONDS   |
| 4409 | The lab instance is not running (paused). | the instance is neither starting nor running, or the   |
|      |                                           | cluster said "VMI is not running" (400) or that the    |
|      |                                           | VMI has failed (409) before the upgrade                |
| 4429 | You may have N consoles open at a time... | CONSOLE_MAX_STREAMS_PER_USER / _PROCESS reached        |
| 4502 | The connection to the machine was lost... | the upstream websocket ended or dropped (with or       |
|      |                                           | without a close frame, or no answer to keepalive       |
|      |                                           | pings): reconnect                                      |
| 4503 | The cluster is unavailable; try again...  | the upstream websocket could not be opened (any other  |
|      |                                           | answer, e.g. virt-api's 500), or a step of opening     |
|      |                                           | failed here (the channel layer, the database)          |

Read-only watch streams (`.../<kind>/watch`, `WatchConsumer`, vncproxy/sharing.py) also close with
4410 (the student closed or reopened the console), 4415 (the screen uses an RFB feature watching
cannot follow), 4508 (the observer fell more than 8 MiB behind), and 4409 when the student has no
open console of that machine in this process.

Students get these plain words; staff get the cluster's exact reason after them, in brackets
(cut to the 123 bytes a close frame can carry), for 4409, 4502 and 4503.

The Origin is checked first (vncproxy/origin.py): a foreign page is refused before anything is
looked up, so it learns nothing but the refusal. Unknown websocket paths close with 4404.
Ticket values are never logged (the query string is not either).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from labs.lifecycle import instance_touch
from vncproxy.access import StreamAccess, StreamRefused, authorise_stream, authorise_watch
from vncproxy.limits import LimitReached, StreamKey, shared_user_streams, stream_limits
from vncproxy.origin import header, origin_allowed
from vncproxy.relay import AsgiBrowser, Relay, close_reason
from vncproxy.sharing import (
    NOT_SHAREABLE,
    ConsoleShare,
    Observer,
    observer_browser,
    share_close,
    share_open,
    shares,
)
from vncproxy.upstream import (
    UpstreamConnection,
    UpstreamFailed,
    UpstreamNotRunning,
    UpstreamUnavailable,
    open_upstream,
)
from vncproxy.watches import watch_ended, watch_started

logger = logging.getLogger(__name__)

REPLACED = (4001, "Replaced by a newer connection to this console.")
TICKET_REQUIRED = (4401, "A console ticket is required when the request has no Origin header.")
FOREIGN_ORIGIN = (4403, "Consoles can only be opened from this site's pages.")
CLUSTER_UNAVAILABLE = (4503, "The cluster is unavailable; try again shortly.")
# Something of ours failed (the database, Redis under the channel layer or the limits, a bug).
SERVICE_UNAVAILABLE = (4503, "The console service is unavailable; try again shortly.")
# Activity is written at most this often per instance by this process (instance_touch throttles
# again in the database, across processes).
TOUCH_INTERVAL = 60.0
_last_touch: dict[int, float] = {}


class ConsoleConsumer(AsyncWebsocketConsumer):
    """One VNC or serial stream of one machine; see the module docstring for the close codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self.user_label = "anonymous"
        self.detailed_reasons = False  # staff see the cluster's own reasons
        self.relay: Relay | None = None
        self.in_group = False
        self.limit_key: tuple[int, StreamKey] | None = None
        self.shared_lease: str | None = None  # this stream's place in the count across processes
        self.share: ConsoleShare | None = None  # instructors watching this stream

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """The consumer's whole life. Channels' own receive loop can fail too (channels-redis raises
        when Redis goes away, and Channels then calls no `disconnect`): the stream still ends, and
        gives back everything it holds."""
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as error:
            logger.warning("The channel layer failed under an open console (%s)", error)
            if self.relay is not None:
                code, plain = SERVICE_UNAVAILABLE
                detail = f"{type(error).__name__}: {error}" if self.detailed_reasons else ""
                await self.relay.finish(code, close_reason(plain, detail))
        finally:
            await self._end()

    async def connect(self) -> None:
        route = self.scope["url_route"]["kwargs"]
        self.instance_id = int(route["instance_id"])
        self.machine_name: str = route["machine"]
        self.kind: str = route["kind"]  # "vnc" or "serial"
        # noVNC may offer "binary"; echo it. Anything else offered and not accepted fails in the browser.
        offered = self.scope.get("subprotocols") or []
        await self.accept("binary" if "binary" in offered else None)
        browser = AsgiBrowser(self.base_send, settings.CONSOLE_BUFFER_BYTES)
        upstream: UpstreamConnection | None = None
        relay: Relay | None = None
        try:
            access = self.access = await self._authorise()
            self.user_label = f"{access.user.pk}:{access.user.get_username()}"
            self.detailed_reasons = bool(access.user.is_staff)
            await self._acquire_limit(access)
            await self._replace_others()
            upstream = await self._open_upstream(access)
            await self.channel_layer.group_add(self.stream_group, self.channel_name)
            self.in_group = True
            # Closed by _end whatever fails next: its observers learn that the stream ended.
            self.share = share_open((self.instance_id, self.machine_name, self.kind), self.kind)
            relay = Relay(
                upstream=upstream,
                browser=browser,
                idle_timeout=settings.CONSOLE_IDLE_TIMEOUT_SECONDS,
                on_activity=self._touch,
                on_tick=self._refresh_lease,
                detailed_reasons=self.detailed_reasons,
                share=self.share,
            )
            relay.start()
        except BaseException as error:
            # Whatever failed (a refusal, Redis, the database, a bug, a cancellation), the stream
            # gives its place back and leaves no task, upstream connection or group membership behind.
            if relay is not None:
                await relay.stop()
            if upstream is not None:
                upstream.abort()
            await self._refuse(browser, error)
            if not isinstance(error, Exception):
                raise
            return
        self.relay = relay
        self._log("accepted", None, "")
        try:
            await self._touch()
        except Exception:  # recording activity must never end the stream; the watchdog retries
            logger.exception("Recording console activity failed")

    async def _refuse(self, browser: AsgiBrowser, error: BaseException) -> None:
        if isinstance(error, StreamRefused):
            refusal = error
        else:
            if isinstance(error, Exception):
                logger.exception("Opening a console stream failed")
            cause = f"{type(error).__name__}: {error}"
            code, plain = SERVICE_UNAVAILABLE
            refusal = StreamRefused(
                code, close_reason(plain, cause if self.detailed_reasons else ""), cause=cause
            )
        self._log("refused", refusal.code, refusal.cause)
        try:
            await browser.close(refusal.code, refusal.reason)
        except Exception as close_error:  # the browser may be gone already
            logger.info("Could not send the refusal to the browser (%s)", close_error)
        finally:
            await self._release_limit()
            await self._leave_group()

    async def _authorise(self) -> StreamAccess:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [None])[0]
        session_user = self.scope.get("user")
        origin = header(self.scope, b"origin")
        if origin is None:
            # Not a browser page: only a ticket may open it, never the cookies it happens to send.
            if not ticket:
                raise StreamRefused(*TICKET_REQUIRED, cause="no origin and no ticket")
            session_user = None
        elif not origin_allowed(self.scope, origin):
            raise StreamRefused(*FOREIGN_ORIGIN, cause=f"origin {origin[:100]!r} not allowed")
        return await database_sync_to_async(authorise_stream)(
            session_user=session_user,
            ticket=ticket,
            instance_id=self.instance_id,
            machine_name=self.machine_name,
            kind=self.kind,
        )

    async def _acquire_limit(self, access: StreamAccess) -> None:
        key: StreamKey = (self.instance_id, self.machine_name, self.kind)
        try:
            stream_limits.acquire(user_id=access.user.pk, key=key)
        except LimitReached as error:
            raise StreamRefused(4429, error.message, cause=f"{error.scope} limit") from error
        self.limit_key = (access.user.pk, key)
        shared = shared_user_streams()
        if shared is None:
            return
        try:
            self.shared_lease = await shared.acquire(
                user_id=access.user.pk, key=key, limit=settings.CONSOLE_MAX_STREAMS_PER_USER
            )
        except LimitReached as error:
            raise StreamRefused(4429, error.message, cause="user limit (all processes)") from error
        except (RedisError, OSError) as error:
            # A console must not fail because Redis hiccups: this process's own count still holds.
            logger.warning("Console limits across processes unavailable (%s); counting here only", error)

    async def _refresh_lease(self) -> None:
        shared = shared_user_streams()
        if shared is not None and self.shared_lease is not None and self.limit_key is not None:
            await shared.refresh(user_id=self.limit_key[0], lease=self.shared_lease)

    async def _release_limit(self) -> None:
        if self.limit_key is None:
            return
        user_id, key = self.limit_key
        stream_limits.release(user_id=user_id, key=key)
        self.limit_key = None
        lease, self.shared_lease = self.shared_lease, None
        shared = shared_user_streams()
        if lease is not None and shared is not None:
            try:
                await shared.release(user_id=user_id, lease=lease)
            except (RedisError, OSError) as error:  # the lease expires by itself
                logger.warning("Could not release a console lease (%s); it expires by itself", error)

    @property
    def stream_group(self) -> str:
        return f"console.{self.instance_id}.{self.machine_name}.{self.kind}"

    async def _replace_others(self) -> None:
        """Kick the earlier connection to this stream, in any process, before ours opens upstream:
        KubeVirt kicks it upstream too, and this way its browser learns why (4001, not 4502)."""
        kick = {"type": "console.kick", "by": self.channel_name}
        await self.channel_layer.group_send(self.stream_group, kick)

    async def _open_upstream(self, access: StreamAccess) -> UpstreamConnection:
        try:
            return await open_upstream(
                namespace=access.instance.namespace or "",
                name=self.machine_name,
                kind=self.kind,
                shell_user=access.machine.username,
            )
        except (UpstreamNotRunning, UpstreamFailed) as error:
            reason = self._reason(error.message, error.cluster_reason)
            raise StreamRefused(4409, reason, cause=error.cluster_reason) from error
        except UpstreamUnavailable as error:
            code, plain = CLUSTER_UNAVAILABLE
            reason = self._reason(plain, error.cluster_reason)
            raise StreamRefused(code, reason, cause=error.cluster_reason) from error

    def _reason(self, plain: str, cluster_reason: str) -> str:
        return close_reason(plain, cluster_reason if self.detailed_reasons else "")

    async def console_kick(self, event: dict) -> None:
        if event.get("by") != self.channel_name and self.relay is not None:
            await self.relay.finish(*REPLACED)

    async def dispatch(self, message: dict) -> None:
        # The hot path: browser frames go straight to the relay, without the per-message
        # close_old_connections() thread hop Channels does before every handler (no ORM here).
        if message["type"] == "websocket.receive":
            data = message.get("bytes")
            if data is not None and self.relay is not None:
                await self.relay.to_upstream(data)
            elif self.kind == "terminal" and self.relay is not None and message.get("text"):
                self._resize(message["text"])
            # Other text frames are dropped, as KubeVirt drops them.
            return
        await super().dispatch(message)

    def _resize(self, text: str) -> None:
        """xterm.js's size, sent by the page as a text frame `{"columns": c, "rows": r}`."""
        try:
            size = json.loads(text[:200])
            columns, rows = int(size["columns"]), int(size["rows"])
        except (ValueError, TypeError, KeyError):
            return
        if 0 < columns <= 1000 and 0 < rows <= 1000 and self.relay is not None:
            self.relay.upstream.send_resize(columns, rows)

    async def disconnect(self, code: int) -> None:
        await self._end()

    async def _end(self) -> None:
        """Stop the relay and give back the limit and the group, once (disconnect or any failure)."""
        relay, self.relay = self.relay, None
        share, self.share = self.share, None
        if share is not None:  # first: it cannot fail, and its observers must learn of the end
            share_close((self.instance_id, self.machine_name, self.kind), share)
        if relay is not None:
            await relay.stop()
            cause = relay.close_reason
            if relay.upstream_end_cause:
                cause = f"{cause} ({relay.upstream_end_cause})"
            self._log("closed", relay.close_code, cause, relay)
        await self._release_limit()
        await self._leave_group()

    async def _leave_group(self) -> None:
        """Not Channels' own `groups` list: its disconnect handler would stop at a Redis error before
        `disconnect` releases anything."""
        if not self.in_group:
            return
        self.in_group = False
        try:
            await self.channel_layer.group_discard(self.stream_group, self.channel_name)
        except (RedisError, OSError) as error:  # channels-redis expires group memberships itself
            logger.warning("Could not leave the console's group (%s)", error)

    async def _touch(self) -> None:
        now = time.monotonic()
        if now - _last_touch.get(self.instance_id, -TOUCH_INTERVAL) < TOUCH_INTERVAL:
            return
        _last_touch[self.instance_id] = now
        await database_sync_to_async(instance_touch)(instance=self.access.instance)

    def _log(self, outcome: str, code: int | None, cause: str, relay: Relay | None = None) -> None:
        relay = relay or self.relay
        logger.info(
            "console %s: user=%s instance=%s machine=%s kind=%s code=%s cause=%s duration=%.1fs "
            "bytes_up=%d bytes_down=%d",
            outcome,
            self.user_label,
            self.instance_id,
            self.machine_name,
            self.kind,
            code,
            cause or "-",
            time.monotonic() - self.started,
            relay.bytes_up if relay else 0,
            relay.bytes_down if relay else 0,
        )


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """A websocket path that is no console's: accepted, then closed with 4404 and why."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=4404, reason="No console at this address.")


WATCH_NOTHING_OPEN = (4409, "The student has no open console of this machine on this server right now.")


class WatchConsumer(AsyncWebsocketConsumer):
    """An instructor watching a student's console read-only (vncproxy/sharing.py): the machine's
    output from the student's own upstream; anything the observer sends is dropped here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer: Observer | None = None
        self.share: ConsoleShare | None = None
        self.watch_id: int | None = None

    async def connect(self) -> None:
        route = self.scope["url_route"]["kwargs"]
        instance_id, machine, kind = int(route["instance_id"]), route["machine"], route["kind"]
        offered = self.scope.get("subprotocols") or []
        await self.accept("binary" if "binary" in offered else None)
        browser = observer_browser(self.base_send)
        origin = header(self.scope, b"origin")
        try:
            if origin is None or not origin_allowed(self.scope, origin):
                raise StreamRefused(*FOREIGN_ORIGIN, cause="watch without an allowed origin")
            access = await database_sync_to_async(authorise_watch)(
                user=self.scope.get("user"), instance_id=instance_id, machine_name=machine, kind=kind
            )
            share = shares.get((instance_id, machine, kind))
            if share is None or (share.server is not None and not share.server.initialised):
                raise StreamRefused(*WATCH_NOTHING_OPEN, cause="no student stream in this process")
            if not share.shareable:
                raise StreamRefused(*NOT_SHAREABLE, cause="rfb framing broken")
        except StreamRefused as refusal:
            logger.info("watch refused: instance=%s machine=%s code=%s cause=%s", instance_id, machine,
                        refusal.code, refusal.cause)  # fmt: skip
            await browser.close(refusal.code, refusal.reason)
            return
        # Joined before anything is awaited: a share looked up is still open (its end closes us).
        self.share = share
        self.observer = Observer(browser)
        share.join(self.observer)
        self.watch_id = await database_sync_to_async(watch_started)(
            observer=access.user, instance=access.instance, machine_name=machine, kind=kind
        )

    async def dispatch(self, message: dict) -> None:
        if message["type"] == "websocket.receive":
            # Read-only: an observer's input never reaches the machine. The share reads only the
            # VNC handshake from it (answered by the relay itself), and drops everything else.
            data = message.get("bytes")
            if data is not None and self.observer is not None and self.share is not None:
                self.share.from_observer(self.observer, data)
            return
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        observer, self.observer = self.observer, None
        if observer is not None and self.share is not None:
            self.share.leave(observer)
            observer.task.cancel()
        if self.watch_id is not None:
            watch_id, self.watch_id = self.watch_id, None
            await database_sync_to_async(watch_ended)(watch_id=watch_id)
