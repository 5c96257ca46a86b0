"""The byte relay between one browser websocket (ASGI messages) and one upstream (KubeVirt) websocket.

Machine → browser: bytes from the machine arrive in the upstream's read callback (`upstream_data`)
and queue in `AsgiBrowser`, whose task sends them as `websocket.send` messages. The ASGI server
makes that send wait while the browser's connection cannot take more (uvicorn's websockets-sansio
waits while its transport's write buffer is above the high-water mark), so the queue fills; above
CONSOLE_BUFFER_BYTES the upstream stops reading (TCP then pushes back on the API server) until the
queue is down to half.
Browser → machine: the consumer awaits `to_upstream` for each message, which waits while the
upstream's write buffer is above CONSOLE_BUFFER_BYTES; the server reads no further browser frames
until the consumer asks for the next message (uvicorn pauses reading until then).
No channel layer, no database, no thread hop on the data path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Protocol

from vncproxy.upstream import UpstreamConnection


class ConsoleShareSink(Protocol):
    """Where the machine's output goes besides the student's browser (observers)."""

    def output(self, chunks: list[bytes]) -> None: ...

    def from_student(self, data: bytes) -> bytes:
        """What of the student's input goes to the machine now."""
        ...

    def attach(self, send_upstream: Callable[[bytes], None]) -> None: ...


logger = logging.getLogger(__name__)

# How often the watchdog looks at the stream when nothing else wakes it (idle check, activity).
ACTIVITY_INTERVAL = 60.0
UPSTREAM_LOST = (4502, "The connection to the machine was lost; reconnect.")
# KubeVirt ends the older stream of a console when a newer one opens (it closes the connection, no
# close frame), and the newer consumer's kick (4001, through the channel layer, possibly from another
# process) can arrive just after that. The end of the upstream waits this long for it, so that the
# older browser is told the real reason (and does not reconnect and kick the newer one in turn).
REPLACEMENT_GRACE_SECONDS = 1.0
# A browser that takes nothing more is not waited for longer than this to receive the close frame.
CLOSE_TIMEOUT_SECONDS = 10.0
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 for the code


def close_reason(reason: str, detail: str = "") -> str:
    """`reason`, with `detail` in brackets when given, cut to what a close frame can carry."""
    text = f"{reason} ({detail})" if detail else reason
    encoded = text.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return text
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


class AsgiBrowser:
    """The browser side: frames for the browser queue here (bounded: `write` reports full above
    `limit`) and a task sends them with the consumer's ASGI `send`."""

    def __init__(self, send: Callable[[dict], Awaitable[None]], limit: int) -> None:
        self._send = send
        self.limit = limit
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._full = False
        self._wakeup = asyncio.Event()
        self._relay: Relay | None = None

    def start(self, relay: Relay) -> asyncio.Task[None]:
        self._relay = relay
        return asyncio.create_task(self._pump())

    def write(self, chunks: list[bytes]) -> bool:
        """Queue the chunks as one binary frame. False when the queue is full: the relay stops
        reading the machine until `relay.browser_writable()`."""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._queue.append(data)
        self._queued += len(data)
        self._wakeup.set()
        if self._queued > self.limit:
            self._full = True
        return not self._full

    async def _pump(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                data = self._queue.popleft()
                self._queued -= len(data)
                await self._send({"type": "websocket.send", "bytes": data})
                if self._full and self._queued <= self.limit // 2:
                    self._full = False
                    if self._relay is not None:
                        self._relay.browser_writable()

    async def close(self, code: int, reason: str) -> None:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            while self._queue:  # what the machine sent before the end goes first
                await self._send({"type": "websocket.send", "bytes": self._queue.popleft()})
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


class Relay:
    """Joins an open upstream and a browser side; runs a watchdog (idle timeout, activity)."""

    def __init__(
        self,
        *,
        upstream: UpstreamConnection,
        browser: AsgiBrowser,
        idle_timeout: float,
        on_activity: Callable[[], Awaitable[None]],
        on_tick: Callable[[], Awaitable[None]] | None = None,
        detailed_reasons: bool = False,
        share: ConsoleShareSink | None = None,
    ) -> None:
        self.upstream = upstream
        self.share = share  # observers watching this stream (vncproxy.sharing), fed after the browser
        self.browser = browser
        self.idle_timeout = idle_timeout
        self.on_activity = on_activity
        self.on_tick = on_tick  # called at least every ACTIVITY_INTERVAL while the stream is open
        self.detailed_reasons = detailed_reasons  # staff: close reasons name the cluster's cause
        self.bytes_up = 0  # browser → machine
        self.bytes_down = 0  # machine → browser
        self.close_code: int | None = None
        self.close_reason = ""
        self.upstream_end_cause = ""  # why the machine's side ended, when it did
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.last_activity = self._loop.time()
        self._reported_activity = self.last_activity

    def start(self) -> None:
        if self.share is not None:
            self.share.attach(self._send_own)
        self._track(self.browser.start(self))
        self._spawn(self._watchdog())
        self.upstream.attach(self)  # may deliver (or end) at once

    # -- browser → machine ------------------------------------------------------------------------------
    async def to_upstream(self, data: bytes) -> None:
        """One frame from the browser; returns when the upstream can take the next one."""
        if self.close_code is not None:
            return
        self.bytes_up += len(data)
        self.last_activity = self._loop.time()
        if self.share is not None:
            data = self.share.from_student(data)
            if not data:
                return
        self.upstream.send(data)
        if not self.upstream.writable:
            await self.upstream.drained()

    def _send_own(self, data: bytes) -> None:
        """A message of the relay's own to the machine (the share's full update request)."""
        if self.close_code is None:
            self.upstream.send(data)

    def upstream_writable(self) -> None:
        pass  # `to_upstream` waits for the drain itself

    # -- machine → browser ------------------------------------------------------------------------------
    def upstream_data(self, chunks: list[bytes]) -> None:
        if self.close_code is not None:
            return
        self.bytes_down += sum(map(len, chunks))
        self.last_activity = self._loop.time()
        if not self.browser.write(chunks):
            self.upstream.pause_reading()
        if self.share is not None:
            self.share.output(chunks)

    def browser_writable(self) -> None:
        self.upstream.resume_reading()

    def upstream_closed(self, cause: str) -> None:
        if self.close_code is not None:
            return  # the relay ended first and closed the upstream itself
        self.upstream_end_cause = cause
        self._spawn(self._finish_upstream_lost())

    async def _finish_upstream_lost(self) -> None:
        await asyncio.sleep(REPLACEMENT_GRACE_SECONDS)
        code, reason = UPSTREAM_LOST
        detail = self.upstream_end_cause if self.detailed_reasons else ""
        await self.finish(code, close_reason(reason, detail))

    # -- tasks --------------------------------------------------------------------------------------------
    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        self._track(self._loop.create_task(coroutine))

    def _track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watchdog(self) -> None:
        while self.close_code is None:
            now = self._loop.time()
            if self.last_activity > self._reported_activity:
                self._reported_activity = self.last_activity
                try:
                    await self.on_activity()
                except Exception:  # recording activity must never end the stream
                    logger.exception("Recording console activity failed")
            if self.on_tick is not None:
                try:
                    await self.on_tick()
                except Exception:  # neither may bookkeeping
                    logger.exception("Console stream bookkeeping failed")
            deadline = self.last_activity + self.idle_timeout
            if now >= deadline:
                minutes = max(1, round(self.idle_timeout / 60))
                await self.finish(4408, f"Closed after {minutes} min without activity.")
                return
            await asyncio.sleep(min(deadline - now, ACTIVITY_INTERVAL))

    async def finish(self, code: int, reason: str) -> None:
        """End the stream once: close the browser with `code`, the upstream, and the other tasks."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        self.upstream.close()
        with contextlib.suppress(Exception):  # the browser may be gone, or take nothing more
            await self.browser.close(code, reason)

    async def stop(self) -> None:
        """The browser went away: cancel every task and wait for them, then close the upstream."""
        if self.close_code is None:
            self.close_code, self.close_reason = 1000, "browser closed"
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.upstream.close()
