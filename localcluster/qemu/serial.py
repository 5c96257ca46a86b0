"""The serial console multiplexer.

QEMU's serial socket takes one client and drops whatever the guest prints while none is connected,
so the boot banner would be lost before anyone opens the console. The runtime therefore stays
connected from the moment QEMU starts, keeps the last bytes, and relays to one viewer at a time: a
new viewer first gets the recent output (so it sees the banner and prompt), then the live stream,
and takes over from the previous viewer, as KubeVirt's console does.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from localcluster.pipes import stream_pipe

BACKLOG_BYTES = 16 * 1024
# Terminal queries in replayed output would make the viewer's terminal answer them again, and the
# answer (e.g. a cursor position report) would be typed into the shell; drop them from the replay.
REPLAY_STRIP = (b"\x1b[6n", b"\x1b[5n", b"\x1b[c", b"\x1b[0c")


class SerialConsole:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.backlog = bytearray()
        self.output = asyncio.Event()  # set whenever the guest printed something (the benchmark waits on it)
        self._guest_writer: asyncio.StreamWriter | None = None
        self._viewer: asyncio.StreamWriter | None = None
        self._viewer_task: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        reader, self._guest_writer = await asyncio.open_unix_connection(str(self.path))
        self._reader_task = asyncio.create_task(self._from_guest(reader))

    async def _from_guest(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(4096):
            self.backlog += data
            del self.backlog[:-BACKLOG_BYTES]
            self.output.set()
            viewer = self._viewer
            if viewer is not None:
                try:
                    viewer.write(data)
                except (ConnectionError, RuntimeError):
                    self._viewer = None

    async def _to_guest(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(4096):
            if self._guest_writer is None:
                break
            self._guest_writer.write(data)
            await self._guest_writer.drain()

    async def attach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new viewer's end of the console; the previous viewer is disconnected."""
        self._detach()
        (reader, writer), theirs = stream_pipe()
        replay = bytes(self.backlog)
        for query in REPLAY_STRIP:
            replay = replay.replace(query, b"")
        writer.write(replay)
        self._viewer = writer
        self._viewer_task = asyncio.create_task(self._to_guest(reader))
        self._viewer_task.add_done_callback(lambda _t, w=writer: self._viewer_gone(w))
        return theirs

    def _viewer_gone(self, writer: asyncio.StreamWriter) -> None:
        if self._viewer is writer:
            self._viewer = None
        writer.close()

    def _detach(self) -> None:
        if self._viewer_task is not None:
            self._viewer_task.cancel()
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    async def close(self) -> None:
        self._detach()
        for task in (self._reader_task, self._viewer_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._guest_writer is not None:
            self._guest_writer.close()
            self._guest_writer = None
