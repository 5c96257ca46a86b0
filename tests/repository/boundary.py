"""The checkout stands on its own: no code path the tests run may read beside it.

A user's clone has nothing next to it, while our own machines have `../shared` (reference material
for developers). An audit hook (PEP 578) records every file or folder this test process opens or
lists under the checkout's parent folder but outside the checkout, and the session fails if there
was one. Subprocesses (the local cluster, the app server) are covered by CI instead, which runs the whole
suite from a clone with nothing beside it (`.ci/run`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WATCHED_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class BoundaryWatch:
    """Paths under `parent` but outside `repo` that were opened or listed."""

    def __init__(self, repo: Path) -> None:
        self.repo = os.path.abspath(repo)
        self.parent = os.path.dirname(self.repo)
        self.outside: list[str] = []

    def crosses(self, path: str) -> bool:
        absolute = os.path.abspath(path)
        inside_parent = absolute == self.parent or absolute.startswith(self.parent + os.sep)
        inside_repo = absolute == self.repo or absolute.startswith(self.repo + os.sep)
        return inside_parent and not inside_repo

    def record(self, event: str, args: tuple) -> None:
        if event not in WATCHED_EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, str) and self.crosses(path):
            self.outside.append(f"{event} {path}")


WATCH = BoundaryWatch(REPO)


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(WATCH.record)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if WATCH.outside:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if WATCH.outside:
        terminalreporter.section("reads outside the repository", red=True)
        for line in dict.fromkeys(WATCH.outside):
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            f"The suite read {len(WATCH.outside)} time(s) beside the checkout ({WATCH.parent}); "
            "a user's clone has nothing there."
        )
