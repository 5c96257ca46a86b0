"""In-memory stream pairs (localcluster/pipes.py): bytes, end of stream, flow control."""

from __future__ import annotations

import asyncio

import pytest

from localcluster.pipes import stream_pipe


async def test_bytes_go_both_ways_in_order():
    (a_reader, a_writer), (b_reader, b_writer) = stream_pipe()
    a_writer.write(b"hello ")
    a_writer.write(memoryview(b"world"))
    b_writer.write(b"back")
    await a_writer.drain()
    assert await b_reader.readexactly(11) == b"hello world"
    assert await a_reader.readexactly(4) == b"back"


async def test_closing_one_end_is_end_of_stream_for_the_other():
    (_, a_writer), (b_reader, b_writer) = stream_pipe()
    a_writer.write(b"last words")
    a_writer.close()
    await a_writer.wait_closed()
    assert await b_reader.read() == b"last words"
    assert b_reader.at_eof()
    b_writer.write(b"nobody listens")  # dropped, as on a socket whose peer is gone
    await b_writer.drain()


async def test_write_eof_half_closes():
    (a_reader, a_writer), (b_reader, b_writer) = stream_pipe()
    a_writer.write_eof()
    assert await b_reader.read() == b""
    b_writer.write(b"still open this way")
    assert await a_reader.readexactly(19) == b"still open this way"
    with pytest.raises(RuntimeError):
        a_writer.write(b"too late")


async def test_a_reader_that_falls_behind_pauses_the_writer():
    limit = 1024
    (_, writer), (reader, _) = stream_pipe(limit=limit)
    writer.write(b"x" * (3 * limit))  # more than twice the reader's limit: the writer must wait
    drain = asyncio.create_task(writer.drain())
    await asyncio.sleep(0.05)
    assert not drain.done()
    assert await reader.readexactly(3 * limit) == b"x" * (3 * limit)
    await asyncio.wait_for(drain, 1)


async def test_closing_the_reader_releases_a_paused_writer():
    limit = 1024
    (_, writer), (_, reader_writer) = stream_pipe(limit=limit)
    writer.write(b"x" * (3 * limit))
    drain = asyncio.create_task(writer.drain())
    await asyncio.sleep(0.05)
    assert not drain.done()
    reader_writer.close()
    await asyncio.wait_for(drain, 1)
