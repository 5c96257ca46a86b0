"""A pair of connected asyncio streams in memory, for byte streams inside this process.

The runtimes hand the API server a console or VNC stream as an asyncio (reader, writer) pair. The
other end is in this process too (the `none` runtime's stand-in guests, the qemu runtime's serial
multiplexer), so a socketpair would only add two system calls, two kernel copies and an epoll
wake-up per chunk each way. Here a write is delivered straight into the other end's StreamReader.

Flow control is asyncio's own: a StreamReader asks its transport to pause reading when more than
twice its limit is buffered; here that pauses the writing end (its `drain()` waits) until the reader
has caught up. Closing an end is end-of-stream for the other.
"""

from __future__ import annotations

import asyncio
from typing import Any

STREAM_LIMIT = 64 * 1024  # asyncio's default StreamReader limit; writers pause above twice this


class _PipeEnd(asyncio.Transport):
    """One end; behaves like a socket transport: writes after the peer closed go nowhere, and the
    peer's reader sees end-of-stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.StreamReaderProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self.peer: _PipeEnd | None = None
        self._closing = False
        self._eof_sent = False
        self._writing_paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent and not self._closing:
            raise RuntimeError("Cannot call write() after write_eof()")
        peer = self.peer
        if data and not self._closing and peer is not None and not peer._closing:
            peer._protocol.data_received(bytes(data))

    def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        peer = self.peer
        if peer is not None and not peer._closing:
            self._loop.call_soon(peer._protocol.eof_received)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0  # delivered at once: the peer's reader holds it (and pauses this end)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    # The reader asks its own transport to pause: that is the other end's writing.
    def pause_reading(self) -> None:
        peer = self.peer
        if peer is not None and not peer._closing:
            peer._pause_writing()

    def resume_reading(self) -> None:
        if self.peer is not None:
            self.peer._resume_writing()

    def is_reading(self) -> bool:
        return self.peer is None or not self.peer._writing_paused

    def _pause_writing(self) -> None:
        if not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _resume_writing(self) -> None:
        if self._writing_paused:
            self._writing_paused = False
            self._protocol.resume_writing()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self.write_eof()
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        if self.peer is not None:
            self.peer._resume_writing()  # nobody reads its writes any more: they are dropped

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def stream_pipe(
    limit: int = STREAM_LIMIT,
) -> tuple[
    tuple[asyncio.StreamReader, asyncio.StreamWriter], tuple[asyncio.StreamReader, asyncio.StreamWriter]
]:
    """Two connected (reader, writer) pairs: what one end writes, the other reads."""
    loop = asyncio.get_running_loop()
    ends = []
    for _ in range(2):
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = _PipeEnd(loop, protocol)
        ends.append((reader, protocol, transport))
    (_, _, first), (_, _, second) = ends
    first.peer, second.peer = second, first
    pairs = []
    for reader, protocol, transport in ends:
        protocol.connection_made(transport)
        pairs.append((reader, asyncio.StreamWriter(transport, protocol, reader, loop)))
    return pairs[0], pairs[1]
