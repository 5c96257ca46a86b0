"""`python -m laborchestrator.serve`: Daphne on uvloop, or on asyncio's loop when asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# What Daphne's reactor ends up running on, from a real `serve` start-up: `daphne.cli` is replaced
# by a stand-in that imports `daphne.server` when run, as the real one does, and reports the reactor's
# loop instead of serving.
PROBE = """
import sys, types

def entrypoint():
    import daphne.server
    from twisted.internet import reactor
    print(type(reactor._asyncioEventloop).__module__)

cli = types.ModuleType("daphne.cli")
cli.CommandLineInterface = types.SimpleNamespace(entrypoint=entrypoint)
sys.modules["daphne.cli"] = cli
from laborchestrator import serve
serve.main()
"""


def reactor_loop_module(event_loop: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "EVENT_LOOP"}
    if event_loop is not None:
        env["EVENT_LOOP"] = event_loop
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_daphne_runs_on_uvloop_by_default():
    assert reactor_loop_module(None) == "uvloop"


def test_event_loop_asyncio_keeps_pythons_loop():
    assert reactor_loop_module("asyncio").startswith("asyncio")


def test_refuses_when_daphne_server_was_imported_first():
    code = "import daphne.server\nfrom laborchestrator import serve\nserve.main()"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "imported before the event loop was chosen" in result.stderr
