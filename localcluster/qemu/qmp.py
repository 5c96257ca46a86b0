"""A small client for QEMU's monitor protocol (QMP) over its unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any


class QmpError(Exception):
    pass


class QmpClient:
    """One connection, one command at a time; asynchronous events are skipped (we watch the process)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path) -> QmpClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        client = cls(reader, writer)
        greeting = await client._read_message()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        await client.execute("qmp_capabilities")
        return client

    async def _read_message(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            raise QmpError("QEMU closed the monitor connection")
        return json.loads(line)

    async def execute(self, command: str, **arguments: Any) -> Any:
        async with self._lock:
            message: dict[str, Any] = {"execute": command}
            if arguments:
                message["arguments"] = arguments
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
            while True:
                reply = await self._read_message()
                if "event" in reply:
                    continue
                if "error" in reply:
                    raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
                return reply.get("return")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
