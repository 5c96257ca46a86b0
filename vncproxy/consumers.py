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
|      |                                           | cluster said "VMI is not running" (400) before upgrade |
| 4429 | You may have N consoles open at a time... | CONSOLE_MAX_STREAMS_PER_USER / _PROCESS reached        |
| 4502 | The connection to the machine was lost... | the upstream websocket ended or dropped: reconnect     |
| 4503 | The cluster is unavailable; try again...  | the upstream websocket could not be opened             |

The Origin is checked first (vncproxy/origin.py): a foreign page is refused before anything is
looked up, so it learns nothing but the refusal. Unknown websocket paths close with 4404.
Ticket values are never logged (the query string is not either).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from labs.lifecycle import instance_touch
from vncproxy import daphne_transport
from vncproxy.access import StreamAccess, StreamRefused, authorise_stream
from vncproxy.limits import LimitReached, StreamKey, shared_user_streams, stream_limits
from vncproxy.origin import header, origin_allowed
from vncproxy.relay import AsgiBrowser, BrowserSide, Relay
from vncproxy.upstream import UpstreamConnection, UpstreamNotRunning, UpstreamUnavailable, open_upstream

logger = logging.getLogger(__name__)

REPLACED = (4001, "Replaced by a newer connection to this console.")
TICKET_REQUIRED = (4401, "A console ticket is required when the request has no Origin header.")
FOREIGN_ORIGIN = (4403, "Consoles can only be opened from this site's pages.")
CLUSTER_UNAVAILABLE = (4503, "The cluster is unavailable; try again shortly.")
# Activity is written at most this often per instance by this process (instance_touch throttles
# again in the database, across processes).
TOUCH_INTERVAL = 60.0
_last_touch: dict[int, float] = {}


class ConsoleConsumer(AsyncWebsocketConsumer):
    """One VNC or serial stream of one machine; see the module docstring for the close codes."""

    async def connect(self) -> None:
        self.started = time.monotonic()
        route = self.scope["url_route"]["kwargs"]
        self.instance_id = int(route["instance_id"])
        self.machine_name: str = route["machine"]
        self.kind: str = route["kind"]  # "vnc" or "serial"
        self.user_label = "anonymous"
        self.relay: Relay | None = None
        self.limit_key: tuple[int, StreamKey] | None = None
        self.shared_lease: str | None = None  # this stream's place in the count across processes
        # noVNC may offer "binary"; echo it. Anything else offered and not accepted fails in the browser.
        offered = self.scope.get("subprotocols") or []
        await self.accept("binary" if "binary" in offered else None)
        self.direct = daphne_transport.attach(self)
        browser: BrowserSide = self.direct or AsgiBrowser(self.base_send, settings.CONSOLE_BUFFER_BYTES)
        try:
            access = await self._authorise()
            self.user_label = f"{access.user.pk}:{access.user.get_username()}"
            await self._acquire_limit(access)
            await self._replace_others()
            upstream = await self._open_upstream(access)
        except StreamRefused as refusal:
            self._log("refused", refusal.code, refusal.cause)
            await browser.close(refusal.code, refusal.reason)
            await self._release_limit()
            if self.direct is not None:
                self.direct.stop()
            return
        self.access = access
        self.relay = Relay(
            upstream=upstream,
            browser=browser,
            idle_timeout=settings.CONSOLE_IDLE_TIMEOUT_SECONDS,
            on_activity=self._touch,
            on_tick=self._refresh_lease,
        )
        await self.channel_layer.group_add(self.stream_group, self.channel_name)
        self.groups.append(self.stream_group)
        self.relay.start()
        self._log("accepted", None, "")
        await self._touch()

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
                namespace=access.instance.namespace or "", name=self.machine_name, kind=self.kind
            )
        except UpstreamNotRunning as error:
            raise StreamRefused(4409, "The machine is not running.", cause=error.message) from error
        except UpstreamUnavailable as error:
            raise StreamRefused(*CLUSTER_UNAVAILABLE, cause=error.message) from error

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
            # Text frames are dropped, as KubeVirt drops them.
            return
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        if self.direct is not None:
            self.direct.stop()
        if self.relay is not None:
            await self.relay.stop()
            cause = self.relay.close_reason
            if self.relay.upstream_end_cause:
                cause = f"{cause} ({self.relay.upstream_end_cause})"
            self._log("closed", self.relay.close_code, cause)
        await self._release_limit()

    async def _touch(self) -> None:
        now = time.monotonic()
        if now - _last_touch.get(self.instance_id, -TOUCH_INTERVAL) < TOUCH_INTERVAL:
            return
        _last_touch[self.instance_id] = now
        await database_sync_to_async(instance_touch)(instance=self.access.instance)

    def _log(self, outcome: str, code: int | None, cause: str) -> None:
        relay = self.relay
        logger.info(
            "console %s: user=%s instance=%s machine=%s kind=%s code=%s cause=%s duration=%.1fs "
            "bytes_up=%d bytes_down=%d flow_control=%s",
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
            "daphne" if self.direct is not None else "asgi",
        )


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """A websocket path that is no console's: accepted, then closed with 4404 and why."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=4404, reason="No console at this address.")
