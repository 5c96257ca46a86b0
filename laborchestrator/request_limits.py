"""431 for requests whose headers are too large, before they reach Django or Channels.

The server (uvicorn with h11, laborchestrator/serve.py) holds at most 1 MiB of an incomplete request
head and would hand anything up to that to the application; a 100 KB Authorization header or a 60 KB
cookie is not a request any page or client of ours sends. This answers it with 431 Request Header
Fields Too Large and a sentence saying which limit, for HTTP requests and websocket handshakes alike
(a handshake gets the answer as an HTTP response, through the ASGI websocket denial response, where
the server offers it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header_bytes(scope: Scope) -> int:
    """The size of the request's header fields as sent: `name: value` and a line end for each."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


class RequestHeaderLimit:
    """ASGI middleware: 431 when the headers add up to more than settings.HTTP_MAX_HEADER_BYTES."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            limit = settings.HTTP_MAX_HEADER_BYTES
            if header_bytes(scope) > limit:
                await self.refuse(scope, receive, send, limit)
                return
        await self.application(scope, receive, send)

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        body = f"Request header fields too large: at most {limit} bytes of headers are accepted.\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 431, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # a server without denial responses answers 403
            await send({"type": "websocket.close", "code": 1008})
