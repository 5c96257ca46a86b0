"""The app server: uvicorn, `python -m laborchestrator.serve [--host H] [--port P] [--proxy-headers]`.

Why uvicorn and not Daphne: plain ASGI gives a websocket application no backpressure of its own,
and Daphne reads every incoming frame into an unbounded queue and writes every outgoing one into
Twisted's unbounded buffer; the console relay (vncproxy/) only stayed bounded on Daphne by reaching
into Twisted's and autobahn's internals. uvicorn's `websockets-sansio` implementation pauses reading
a websocket until the application has received what came before, and makes `websocket.send` wait
while the connection's write buffer is above its high-water mark, so a slow browser or a fast
machine holds a bounded amount of memory through public APIs only (README, "Console proxy").

What is fixed here, for every deployment (`make run`, the image, the tests, the benchmarks):
- websockets through websockets' sans-I/O protocol, without permessage-deflate (console bytes are
  compressed or tiny already), pinging browsers every 20 s and dropping those that do not answer
  within 20 s (what Daphne did, with 30 s);
- HTTP through h11, which holds at most MAX_REQUEST_HEAD_BYTES of an incomplete request (then 400);
  requests whose headers are larger than HTTP_MAX_HEADER_BYTES are answered 431 by the application
  (laborchestrator/request_limits.py). websockets' own header limits are raised to h11's, because
  uvicorn does not send the 431 websockets prepares for a handshake over its limits;
- the event loop: uvloop (compiled transports and TLS; the relay moves every console byte through
  it), or asyncio's own with EVENT_LOOP=asyncio (or without uvloop installed, with a warning);
- no lifespan protocol (the app has no start-up or shutdown hooks); Django's LOGGING formats
  uvicorn's records too (so tickets in query strings are redacted like everywhere else);
- on SIGTERM: no new connections, consoles closed with 1012 (the page reconnects to another
  replica), and at most GRACEFUL_SHUTDOWN_SECONDS for requests in flight.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence

APPLICATION = "laborchestrator.asgi:application"
# The most of one request's head h11 holds while it is incomplete: beyond it, 400 and the connection
# closes. The application answers 431 far below this (HTTP_MAX_HEADER_BYTES).
MAX_REQUEST_HEAD_BYTES = 1024 * 1024
BROWSER_PING_SECONDS = 20.0
# A browser's message, whole (uvicorn joins fragments): noVNC's and xterm.js's are a few bytes to a
# few KiB (a paste); this bounds what one stream can make the server hold.
BROWSER_MAX_MESSAGE_BYTES = 1024 * 1024
GRACEFUL_SHUTDOWN_SECONDS = 20  # below the Deployment's terminationGracePeriodSeconds (30)


def event_loop() -> str:
    """uvicorn's loop setting: "uvloop" unless EVENT_LOOP=asyncio or uvloop is not installed."""
    if os.environ.get("EVENT_LOOP", "uvloop") == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        warnings.warn("uvloop is not installed: serving on asyncio's event loop", stacklevel=2)
        return "asyncio"
    return "uvloop"


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m laborchestrator.serve", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client's address and scheme from X-Forwarded-For/-Proto (behind an ingress)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="*",
        help="with --proxy-headers: the proxies trusted to set them (comma-separated; default any)",
    )
    parser.add_argument("--root-path", default="", help="the path prefix the app is mounted under")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    # websockets reads these when first imported (documented in its "Environment variables").
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", str(MAX_REQUEST_HEAD_BYTES))
    os.environ.setdefault("WEBSOCKETS_MAX_NUM_HEADERS", str(MAX_REQUEST_HEAD_BYTES // 4))
    import uvicorn

    config = uvicorn.Config(
        APPLICATION,
        host=arguments.host,
        port=arguments.port,
        loop=event_loop(),
        http="h11",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=BROWSER_MAX_MESSAGE_BYTES,
        ws_ping_interval=BROWSER_PING_SECONDS,
        ws_ping_timeout=BROWSER_PING_SECONDS,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        lifespan="off",
        proxy_headers=arguments.proxy_headers,
        forwarded_allow_ips=arguments.forwarded_allow_ips if arguments.proxy_headers else None,
        root_path=arguments.root_path,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
