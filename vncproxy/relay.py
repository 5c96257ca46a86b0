"""The byte relay between one browser websocket and one upstream (KubeVirt) websocket.

Data path, per frame: upstream `recv()` → browser `send()`, and browser frame → upstream `send()`.
No channel layer, no database and no thread hop on it. Buffering is bounded in both directions:
- upstream → browser: one frame is in flight; while the browser side is not writable (see
  `BrowserSide.send`), `recv()` is not called, websockets' small receive queue (`max_queue`) fills
  and it stops reading the socket, so TCP pushes back on the API server;
- browser → upstream: `send()` waits while websockets' write buffer is above `write_limit`, and the
  browser side stops reading meanwhile (see `vncproxy/daphne_transport.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

logger = logging.getLogger(__name__)

# How often the watchdog looks at the stream when nothing else wakes it (idle check, activity).
ACTIVITY_INTERVAL = 60.0


class BrowserGone(Exception):
    """The browser's connection closed under a send; its disconnect event ends the relay."""


class BrowserSide(Protocol):
    async def send(self, data: bytes) -> None:
        """Send one binary frame; returns once the browser side can take more."""

    async def close(self, code: int, reason: str) -> None: ...


class AsgiBrowser:
    """The browser through plain ASGI messages (any server; the Channels test communicator)."""

    def __init__(self, send: Callable[[dict], Awaitable[None]]) -> None:
        self._send = send

    async def send(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class Relay:
    """Runs the upstream→browser pump and a watchdog; the consumer feeds browser frames in."""

    def __init__(
        self,
        *,
        upstream: ClientConnection,
        browser: BrowserSide,
        idle_timeout: float,
        on_activity: Callable[[], Awaitable[None]],
    ) -> None:
        self.upstream = upstream
        self.browser = browser
        self.idle_timeout = idle_timeout
        self.on_activity = on_activity
        self.bytes_up = 0  # browser → machine
        self.bytes_down = 0  # machine → browser
        self.close_code: int | None = None
        self.close_reason = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.last_activity = self._loop.time()
        self._reported_activity = self.last_activity

    def start(self) -> None:
        for coroutine in (self._downstream(), self._watchdog()):
            task = asyncio.create_task(coroutine)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def to_upstream(self, data: bytes) -> None:
        """One frame from the browser; waits while the upstream write buffer is full."""
        if self.close_code is not None:
            return
        self.bytes_up += len(data)
        self.last_activity = self._loop.time()
        try:
            await self.upstream.send(data)
        except ConnectionClosed:
            await self.finish(4502, "The connection to the machine was lost; reconnect.")

    def to_upstream_now(self, data: bytes) -> bool:
        """`to_upstream` without a task hop, for a frame that nothing is queued before: written
        synchronously when the upstream connection is open and its write buffer below
        `write_limit`. False when that is not so; the caller then queues the frame for the pump.

        Uses the websockets connection's sans-I/O protocol the way its `send()` does (pinned
        websockets, tested in tests/vncproxy); a key press saves an event-loop round this way."""
        upstream = self.upstream
        if (
            self.close_code is not None
            or upstream.protocol.state is not State.OPEN
            or upstream.paused
            or upstream.send_in_progress is not None
        ):
            return False
        self.bytes_up += len(data)
        self.last_activity = self._loop.time()
        upstream.protocol.send_binary(data)
        try:
            upstream.send_data()
        except Exception:  # as send() does: the connection is broken, the downstream pump ends it
            upstream.transport.abort()
        return True

    async def _downstream(self) -> None:
        upstream, browser = self.upstream, self.browser
        try:
            while True:
                data = await upstream.recv(decode=False)
                self.bytes_down += len(data)
                self.last_activity = self._loop.time()
                await browser.send(data)
        except ConnectionClosed:
            await self.finish(4502, "The connection to the machine was lost; reconnect.")
        except BrowserGone:
            pass

    async def _watchdog(self) -> None:
        while self.close_code is None:
            now = self._loop.time()
            if self.last_activity > self._reported_activity:
                self._reported_activity = self.last_activity
                try:
                    await self.on_activity()
                except Exception:  # recording activity must never end the stream
                    logger.exception("Recording console activity failed")
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
        with contextlib.suppress(Exception):
            await self.browser.close(code, reason)
        await self._close_upstream()

    async def stop(self) -> None:
        """The browser went away: cancel every task and wait for them, then close the upstream."""
        if self.close_code is None:
            self.close_code, self.close_reason = 1000, "browser closed"
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_upstream()

    async def _close_upstream(self) -> None:
        with contextlib.suppress(Exception):
            await self.upstream.close()
