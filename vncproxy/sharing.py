"""One upstream per machine console, shared by the student and any number of observers.

KubeVirt keeps one `vnc` and one `console` connection per VMI (a second one kicks the first), so
an instructor watching cannot open their own. The student's stream (ConsoleConsumer) holds the one
upstream; a `ConsoleShare` registered under its stream key in this process fans the machine's
output out to observers (WatchConsumer). Input comes only from the student's websocket: observers'
frames are dropped by their consumer and never reach the relay.

Memory is bounded: each observer's queue holds at most CONSOLE_BUFFER_BYTES (an observer that
falls further behind is closed, 4508, and the student is never slowed down by it), and a serial
share keeps the last RECENT_BYTES of output so that a newcomer sees the current screen's worth of
text at once. Observers of a graphical (VNC) console are refused for now (4404): a newcomer joining
an RFB stream mid-way would need the relay to terminate RFB (see README, "Watching").
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine

from vncproxy.limits import StreamKey
from vncproxy.relay import AsgiBrowser

logger = logging.getLogger(__name__)

RECENT_BYTES = 16 * 1024
FELL_BEHIND = (4508, "Your view fell behind the machine; open it again.")
STUDENT_LEFT = (4410, "The student closed this console.")


class Observer:
    """An observer's browser side: a bounded queue of the machine's output."""

    def __init__(self, browser: AsgiBrowser) -> None:
        self.browser = browser
        self.closing = False
        self.task = browser.start(self)  # type: ignore[arg-type]  # needs only browser_writable()

    def browser_writable(self) -> None:
        pass  # an observer that fills its queue is closed, never waited for

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.task.cancel()
        try:
            await self.browser.close(code, reason)
        except Exception as error:  # the observer's browser may be gone
            logger.info("Could not close an observer (%s)", error)


class ConsoleShare:
    """The observers of one student's console stream in this process."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.observers: set[Observer] = set()
        self._recent: deque[bytes] = deque()
        self._recent_bytes = 0

    def output(self, chunks: list[bytes]) -> None:
        """Bytes from the machine (already on their way to the student)."""
        if self.kind == "serial":
            for chunk in chunks:
                self._remember(chunk)
        for observer in list(self.observers):
            if not observer.browser.write(chunks):
                self.observers.discard(observer)
                _spawn(observer.close(*FELL_BEHIND))

    def _remember(self, chunk: bytes) -> None:
        self._recent.append(chunk)
        self._recent_bytes += len(chunk)
        while self._recent_bytes - len(self._recent[0]) >= RECENT_BYTES:
            self._recent_bytes -= len(self._recent.popleft())

    def join(self, observer: Observer) -> None:
        if self._recent:
            observer.browser.write(list(self._recent))
        self.observers.add(observer)

    def leave(self, observer: Observer) -> None:
        self.observers.discard(observer)

    def take_over(self, older: ConsoleShare) -> None:
        """A newer student stream replaced `older`: its observers keep watching through this one."""
        self.observers |= older.observers
        older.observers = set()

    def end(self) -> None:
        """The student's stream ended: close every observer. In tasks of their own, so that the
        closes finish even when the student's consumer is being cancelled."""
        observers, self.observers = self.observers, set()
        for observer in observers:
            _spawn(observer.close(*STUDENT_LEFT))


_closing: set[asyncio.Task[None]] = set()  # observers being closed (a reference keeps each task alive)


def _spawn(coroutine: Coroutine[None, None, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


# This process's shares, by stream: the consumers of one process share one event loop (no lock).
shares: dict[StreamKey, ConsoleShare] = {}


def share_open(key: StreamKey, kind: str) -> ConsoleShare:
    share = ConsoleShare(kind)
    older = shares.get(key)
    if older is not None:
        share.take_over(older)
    shares[key] = share
    return share


def share_close(key: StreamKey, share: ConsoleShare) -> None:
    if shares.get(key) is share:
        del shares[key]
    share.end()
