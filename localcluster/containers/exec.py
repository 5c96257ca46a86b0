"""A process started in a running container by `runc exec`, for pods/exec.

Without a TTY its stdin, stdout and stderr are pipes. With one, runc allocates a pseudo-terminal in
the container and relays it to its own stdio, which is a pseudo-terminal of ours (runc takes a
`--console-socket` only when it detaches, and then its exit status would be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios

DEFAULT_WIDTH, DEFAULT_HEIGHT = 80, 24
READ_CHUNK = 32768


class ExecFailed(Exception):
    pass


class ExecProcess:
    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        self.proc = proc
        self.master = master
        self._master_reader: asyncio.StreamReader | None = None

    @classmethod
    async def start(cls, command: list[str], *, tty: bool) -> ExecProcess:
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            return cls(proc, None)
        # runc allocates the container's terminal and relays it to its own stdio when that is a
        # terminal too: ours, whose master side we keep. A resize is TIOCSWINSZ on ours plus
        # SIGWINCH, on which runc copies the size to the container's (runc's tty.go, signals.go).
        master, slave = os.openpty()
        _set_size(master, DEFAULT_WIDTH, DEFAULT_HEIGHT)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return cls(proc, master)

    async def output_streams(self) -> list[tuple[int, asyncio.StreamReader]]:
        """(channel, reader) pairs: 1 stdout, 2 stderr (a TTY has only stdout)."""
        if self.master is None:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            return [(1, self.proc.stdout), (2, self.proc.stderr)]
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        read_file = os.fdopen(os.dup(self.master), "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
        self._master_reader = reader
        return [(1, reader)]

    async def write_stdin(self, data: bytes) -> None:
        if self.master is not None:
            await asyncio.get_running_loop().run_in_executor(None, _write_all, self.master, data)
            return
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")  # EOF for the terminal's line discipline
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self.master is not None and width > 0 and height > 0:
            with contextlib.suppress(OSError):
                _set_size(self.master, width, height)
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        return await self.proc.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def close(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
