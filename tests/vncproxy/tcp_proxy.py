"""A TCP proxy for the tests: drops connections that stay silent (as load balancers do), or all of
them at once (as when a server goes away)."""

from __future__ import annotations

import asyncio
import math


class TcpProxy:
    """TCP to `target`. A connection on which no byte passed either way for `idle` seconds is aborted
    on both sides, with no goodbye to either; `cut()` aborts them all and stops listening."""

    def __init__(self, target: tuple[str, int], idle: float = math.inf) -> None:
        self.target = target
        self.idle = idle
        self.drops = 0  # connections dropped for silence
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_reader, client_writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        last_byte = loop.time()
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            self._tasks.discard(task)
            return

        async def pump(reader, writer) -> None:
            nonlocal last_byte
            while data := await reader.read(65536):
                last_byte = loop.time()
                writer.write(data)
                await writer.drain()

        pumps = [
            asyncio.create_task(pump(client_reader, server_writer)),
            asyncio.create_task(pump(server_reader, client_writer)),
        ]
        try:
            while not any(p.done() for p in pumps):
                if loop.time() - last_byte > self.idle:
                    self.drops += 1
                    break
                await asyncio.sleep(0.05)
        finally:
            for p in pumps:
                p.cancel()
            client_writer.transport.abort()
            server_writer.transport.abort()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.discard(task)
