"""Daphne on uvloop: `python -m laborchestrator.serve [daphne's arguments]`.

Daphne runs Twisted's asyncio reactor on an event loop it creates when `daphne.server` is first
imported, so the loop implementation has to be chosen before that import; `daphne` itself cannot
be told. uvloop's transports and TLS are compiled, where asyncio's are Python, and the console
proxy (vncproxy/) relays every byte of every console through this loop, over TLS to the API server
(README, "Performance").

EVENT_LOOP=asyncio keeps Python's own loop (a diagnosis aid; the tests run both). Without uvloop
installed (a platform with no wheel) the same happens, with a warning.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings


def use_uvloop() -> bool:
    """Make uvloop the loop new event loops get, unless EVENT_LOOP=asyncio. True if it is."""
    if os.environ.get("EVENT_LOOP", "uvloop") == "asyncio":
        return False
    try:
        import uvloop
    except ImportError:
        warnings.warn("uvloop is not installed: serving on asyncio's event loop", stacklevel=2)
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before the event loop was chosen")
    use_uvloop()
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
