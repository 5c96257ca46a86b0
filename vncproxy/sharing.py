"""One upstream per machine console, shared by the student and any number of observers.

KubeVirt keeps one `vnc` and one `console` connection per VMI (a second one kicks the first), so
an instructor watching cannot open their own. The student's stream (ConsoleConsumer) holds the one
upstream; a `ConsoleShare` registered under its stream key in this process fans the machine's
output out to observers (WatchConsumer). Input comes only from the student's websocket: observers'
frames are dropped by their consumer (after the VNC handshake, which the relay answers itself) and
never reach the machine.

Serial: a newcomer first gets the last RECENT_BYTES of output (the current screen's worth of text),
then everything as it comes.

VNC (vncproxy/rfb.py): the relay answers the observer's RFB handshake itself, with the student's
ServerInit in the pixel format the student's client asked for, then asks the machine for one full,
non-incremental FramebufferUpdate (slipped in between two whole messages of the student's), and
forwards the machine's messages to the observer from the next message boundary on. The student's
SetEncodings is narrowed to encodings without state across messages, so any message boundary is a
place to start from. A student who reconnects starts a new RFB session: VNC observers are closed
then and reopen (serial observers carry on).

Memory is bounded: each observer's queue holds at most OBSERVER_BUFFER_BYTES (an observer that
falls further behind is closed, 4508; the student is never slowed down by observers).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from enum import Enum

from django.conf import settings

from vncproxy.limits import StreamKey
from vncproxy.relay import AsgiBrowser
from vncproxy.rfb import ClientStream, ObserverHandshake, ServerStream, full_update_request

logger = logging.getLogger(__name__)

RECENT_BYTES = 16 * 1024
# A full VNC frame is a few MiB in Raw: an observer may hold a couple of them before it counts as
# behind.
OBSERVER_BUFFER_BYTES = 8 * 1024 * 1024
FELL_BEHIND = (4508, "Your view fell behind the machine; open it again.")
STUDENT_LEFT = (4410, "The student closed this console.")
STUDENT_RECONNECTED = (4410, "The student reconnected; open the view again.")
NOT_SHAREABLE = (4415, "This screen uses a protocol feature watching does not support.")


class Stage(Enum):
    HANDSHAKE = "handshake"  # VNC: the relay and the observer's client are greeting each other
    WAITING = "waiting"  # VNC: for the next message boundary of the machine's stream
    LIVE = "live"


class Observer:
    """An observer's browser side: a bounded queue of the machine's output."""

    def __init__(self, browser: AsgiBrowser) -> None:
        self.browser = browser
        self.closing = False
        self.stage = Stage.LIVE
        self.handshake: ObserverHandshake | None = None
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
        self.server = ServerStream() if kind == "vnc" else None
        self.client = ClientStream(self.server) if self.server is not None else None
        self._send_upstream: Callable[[bytes], None] | None = None

    def attach(self, send_upstream: Callable[[bytes], None]) -> None:
        """How the share slips a message of its own to the machine (between the student's)."""
        self._send_upstream = send_upstream

    @property
    def shareable(self) -> bool:
        return self.server is None or not (self.server.broken or (self.client and self.client.broken))

    # -- the student's side ----------------------------------------------------------------------------
    def from_student(self, data: bytes) -> bytes:
        """What of the student's input goes to the machine now (VNC: whole messages, rewritten)."""
        if self.client is None:
            return data
        out = self.client.feed(data)
        if self.client.broken:
            self._close_all(NOT_SHAREABLE)
        return out

    def output(self, chunks: list[bytes]) -> None:
        """Bytes from the machine (already on their way to the student)."""
        if self.server is None:  # byte streams (serial, terminal): a newcomer gets the recent output
            for chunk in chunks:
                self._remember(chunk)
            self._deliver(chunks)
            return
        for chunk in chunks:
            was_at_boundary = self.server.at_boundary
            boundaries = self.server.feed(chunk)
            if self.server.broken:
                self._close_all(NOT_SHAREABLE)
                return
            for observer in list(self.observers):
                if observer.stage is Stage.WAITING:
                    start = 0 if was_at_boundary else (boundaries[0] if boundaries else None)
                    if start is None:
                        continue
                    observer.stage = Stage.LIVE
                    if start < len(chunk):
                        self._write(observer, [chunk[start:]])
                elif observer.stage is Stage.LIVE:
                    self._write(observer, [chunk])

    def _deliver(self, chunks: list[bytes]) -> None:
        for observer in list(self.observers):
            self._write(observer, chunks)

    def _write(self, observer: Observer, chunks: list[bytes]) -> None:
        if not observer.browser.write(chunks):
            self.observers.discard(observer)
            _spawn(observer.close(*FELL_BEHIND))

    def _remember(self, chunk: bytes) -> None:
        self._recent.append(chunk)
        self._recent_bytes += len(chunk)
        while self._recent_bytes - len(self._recent[0]) >= RECENT_BYTES:
            self._recent_bytes -= len(self._recent.popleft())

    # -- observers ----------------------------------------------------------------------------------------
    def join(self, observer: Observer) -> None:
        """Serial: live at once, after the recent output. VNC: the handshake starts."""
        if self.server is not None:
            observer.stage = Stage.HANDSHAKE
            observer.handshake = ObserverHandshake(self.server)
            observer.browser.write([observer.handshake.greeting()])
        elif self._recent:
            observer.browser.write(list(self._recent))
        self.observers.add(observer)

    def from_observer(self, observer: Observer, data: bytes) -> None:
        """Bytes an observer sent: VNC handshake answers are used; nothing ever goes upstream."""
        if observer.handshake is None or observer.stage is not Stage.HANDSHAKE:
            return
        reply = observer.handshake.receive(data)
        if reply:
            observer.browser.write([reply])
        if observer.handshake.done and self.server is not None:
            observer.stage = Stage.LIVE if self.server.at_boundary else Stage.WAITING
            if self._send_upstream is not None:  # the whole picture, for the newcomer (and the student)
                self._send_upstream(full_update_request(self.server.width, self.server.height))

    def leave(self, observer: Observer) -> None:
        self.observers.discard(observer)

    def take_over(self, older: ConsoleShare) -> None:
        """A newer student stream replaced `older`: serial observers keep watching through this one;
        VNC observers are closed (the new stream is a new RFB session)."""
        if self.kind == "vnc":
            older._close_all(STUDENT_RECONNECTED)
        else:
            self.observers |= older.observers
            older.observers = set()

    def _close_all(self, reason: tuple[int, str]) -> None:
        observers, self.observers = self.observers, set()
        for observer in observers:
            _spawn(observer.close(*reason))

    def end(self) -> None:
        """The student's stream ended: close every observer. In tasks of their own, so that the
        closes finish even when the student's consumer is being cancelled."""
        self._close_all(STUDENT_LEFT)


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


def observer_browser(send: Callable, limit: int | None = None) -> AsgiBrowser:
    return AsgiBrowser(send, limit or max(settings.CONSOLE_BUFFER_BYTES, OBSERVER_BUFFER_BYTES))
