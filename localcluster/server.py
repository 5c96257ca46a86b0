"""The HTTP side: one aiohttp handler that authenticates, applies faults, authorizes, and dispatches.

Paths are parsed like the real API server does (`requestinfo.py`) rather than through aiohttp's
router, so RBAC, the call log and faults all see the same (verb, group, resource, namespace, name).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import WSMsgType, web

from localcluster import discovery, errors, podstreams
from localcluster.cluster import Cluster
from localcluster.errors import ApiError
from localcluster.faults import Faults
from localcluster.rbac import ANONYMOUS, Authorizer, Identity, RequestAttributes, User, forbidden_reason
from localcluster.requestinfo import RequestInfo, parse
from localcluster.resources import (
    NAMESPACES,
    POD_SUBRESOURCES,
    PODS,
    SUBRESOURCES_GROUP,
    VMI_SUBRESOURCES,
    ResourceType,
    lookup,
)
from localcluster.selectors import field_matcher, label_matcher
from localcluster.store import Expired, WatchEvent
from localcluster.validation import validation_mode

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024  # the real API server's limit
MAX_WATCH_SECONDS = 1800.0  # real servers end a watch after minRequestTimeout (30 min) at most
# With allowWatchBookmarks the watch cache sends a BOOKMARK about every minute and 2 s before the
# watch's deadline (staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go,
# nextBookmarkTime; cacher.go's bookmarkFrequency), so a client resumes close to "now".
BOOKMARK_FREQUENCY_SECONDS = 60.0
BOOKMARK_BEFORE_DEADLINE_SECONDS = 2.0
WEBSOCKET_PROTOCOL = "plain.kubevirt.io"
# Console/VNC relay: bytes read from the guest per websocket frame (at most). Larger reads mean
# fewer frames, TLS writes and wake-ups per byte when the guest streams; small output stays small.
STREAM_CHUNK_BYTES = 256 * 1024
BEARER_PROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."
CONTROL_PREFIX = "/localcluster/v1/"


def _parse_bool(text: str) -> bool:
    """A boolean query parameter as the API server decodes it (Go's strconv.ParseBool)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {text!r}: invalid syntax")


def _next_bookmark(now: float, deadline: float) -> float | None:
    """When the next BOOKMARK is due: a minute from now, or 2 s before the deadline if sooner; None
    once that moment has passed (cache_watcher.go, nextBookmarkTime)."""
    due = min(now + BOOKMARK_FREQUENCY_SECONDS, deadline - BOOKMARK_BEFORE_DEADLINE_SECONDS)
    return due if due > now else None


def _bookmark_object(rt: ResourceType, resource_version: int) -> dict[str, Any]:
    """A BOOKMARK carries only the kind and the resourceVersion the watch has reached."""
    return {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"resourceVersion": str(resource_version), "creationTimestamp": None},
    }


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(text=json.dumps(body), status=status, content_type="application/json")
    for warning in warnings or []:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.status(), status=error.code)
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


@dataclass
class _Stream:
    """An open console/vnc websocket, so the next one for the same VMI can kick it off."""

    websocket: web.WebSocketResponse
    task: asyncio.Task[Any]
    transport: asyncio.BaseTransport | None

    def kick(self) -> None:
        """virt-handler closes the older stream's stop channel and virt-api's raw streamer then
        closes the client's connection: no close frame (a browser sees 1006)."""
        if self.transport is not None:
            self.transport.close()
        self.task.cancel()


# virt-api's 500 for a second VNC connection with preserveSession=true: virt-handler refuses with 503
# (pkg/virt-handler/rest/console.go), and virt-api's dialer wraps the failed dial in an internal error
# (pkg/virt-api/rest/dialers.go, client-go's EnrichError).
PRESERVE_SESSION_REFUSED = (
    "Can't connect to websocket (503): websocket: bad handshake: application info: "
    "Active VNC connection. Request denied."
)


class ApiServer:
    def __init__(
        self, cluster: Cluster, authorizer: Authorizer, identities: list[Identity], faults: Faults
    ) -> None:
        self.cluster = cluster
        self.authorizer = authorizer
        self.tokens: dict[str, User] = {i.token: i.user for i in identities}
        self.faults = faults
        self.server_address = ""
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._long_running: set[asyncio.Task[Any]] = set()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        for task in list(self._long_running):
            task.cancel()

    # -- entry point -------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        call: dict[str, Any] | None = None
        try:
            info = parse(request.method, request.path, request.query)
            user = self.authenticate(request)
            if request.path.startswith(CONTROL_PREFIX):
                return await self.control(request, user)
            if info.resource_request:
                call = {
                    "verb": info.verb,
                    "resource": info.resource,
                    "namespace": info.namespace,
                    "name": info.name,
                    "subresource": info.subresource,
                    "status": None,
                }
                self.faults.calls.append(call)
            response = await self.serve(request, user, info, call)
        except ApiError as error:
            response = error_response(error)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(
                ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}")
            )
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # never let one request take the server down
            log.exception("internal error serving %s %s", request.method, request.path)
            response = error_response(
                ApiError(
                    500,
                    "InternalError",
                    "an error on the server (localcluster) has prevented the request from succeeding",
                )
            )
        if call is not None:
            call["status"] = response.status
        return response

    def authenticate(self, request: web.Request) -> User:
        header = request.headers.get("Authorization")
        token: str | None = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            token = value.strip()
        else:
            # Browsers cannot set headers on websockets; the apiserver accepts the token as a subprotocol.
            for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
                proto = proto.strip()
                if proto.startswith(BEARER_PROTOCOL_PREFIX):
                    encoded = proto[len(BEARER_PROTOCOL_PREFIX) :]
                    try:
                        token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
                    except (binascii.Error, UnicodeDecodeError) as exc:
                        raise ApiError(401, "Unauthorized", "Unauthorized") from exc
        if token is None:
            return ANONYMOUS
        user = self.tokens.get(token)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    async def serve(
        self, request: web.Request, user: User, info: RequestInfo, call: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        delay = self.faults.delay()
        if info.resource_request:
            delay += self.faults.take_hang(info.verb, info.combined_resource)
            if late := self.faults.take_late_commit(info.verb, info.combined_resource):
                return await self._serve_late(request, user, info, delay + late, call)
        if delay:
            await asyncio.sleep(delay)
        return await self._serve_now(request, user, info)

    async def _serve_late(
        self, request: web.Request, user: User, info: RequestInfo, delay: float, call: dict[str, Any] | None
    ) -> web.StreamResponse:
        """Serve after `delay` in a task of its own that a client going away does not stop."""
        await request.read()  # buffered now: after a disconnect the body can no longer be read

        async def carry_out() -> web.StreamResponse:
            await asyncio.sleep(delay)
            try:
                response = await self._serve_now(request, user, info)
            except ApiError as error:
                response = error_response(error)
            if call is not None:
                call["status"] = response.status
            return response

        task = asyncio.ensure_future(carry_out())
        self._long_running.add(task)
        task.add_done_callback(self._long_running.discard)
        return await asyncio.shield(task)

    async def _serve_now(self, request: web.Request, user: User, info: RequestInfo) -> web.StreamResponse:
        if info.resource_request and (failure := self.faults.take_failure(info.verb, info.combined_resource)):
            raise failure
        self.authorize(user, info)
        if not info.resource_request:
            return self.non_resource(request, info)
        if info.group == SUBRESOURCES_GROUP:
            return await self.vmi_subresource(request, info)
        return await self.resource(request, info, user)

    def authorize(self, user: User, info: RequestInfo) -> None:
        attrs = RequestAttributes(
            user=user,
            verb=info.verb,
            resource_request=info.resource_request,
            group=info.group,
            resource=info.resource,
            subresource=info.subresource,
            namespace=info.namespace,
            name=info.name,
            path=info.path,
        )
        if self.authorizer.allows(attrs):
            return
        reason = forbidden_reason(attrs)
        if not info.resource_request:
            raise ApiError(403, "Forbidden", f"forbidden: {reason}")
        qualified = f"{info.resource}.{info.group}" if info.group else info.resource
        subject = f'{qualified} "{info.name}"' if info.name else qualified
        raise ApiError(
            403,
            "Forbidden",
            f"{subject} is forbidden: {reason}",
            name=info.name,
            group=info.group,
            kind=info.resource,
        )

    # -- discovery and other non-resource paths ----------------------------------------------------
    def non_resource(self, request: web.Request, info: RequestInfo) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        path = info.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        body = discovery.document(path, self.server_address)
        if body is None:
            raise errors.path_not_found()
        return json_response(body)

    # -- resources ---------------------------------------------------------------------------------
    async def resource(self, request: web.Request, info: RequestInfo, user: User) -> web.StreamResponse:
        rt = lookup(info.group, info.version, info.resource)
        if rt is PODS and info.subresource in POD_SUBRESOURCES and info.name:
            return await self.pod_subresource(request, info, user)
        if rt is None or info.subresource or (info.namespace and not rt.namespaced and rt is not NAMESPACES):
            raise errors.path_not_found()
        needs_name = info.verb in ("get", "update", "patch", "delete")
        if (
            info.verb not in rt.verbs
            or (info.verb == "create" and info.name)
            or (needs_name and not info.name)
        ):
            raise errors.method_not_allowed()
        # Namespaced kinds need a namespace except to list or watch across all of them.
        namespace = info.namespace if rt.namespaced else ""
        if rt.namespaced and not namespace and info.verb not in ("list", "watch"):
            raise errors.path_not_found()
        query = request.query
        if query.get("dryRun"):
            raise errors.bad_request("localcluster does not implement dryRun")
        field_validation = validation_mode(query.get("fieldValidation"))
        cluster = self.cluster

        if info.verb == "get":
            return json_response(cluster.get(rt, namespace, info.name))
        if info.verb == "list":
            return json_response(self._list_body(rt, namespace, query))
        if info.verb == "watch":
            return await self.watch(request, rt, namespace)
        if info.verb == "create":
            obj, warnings = cluster.create(
                rt, namespace, await self._body(request), field_validation, user=user
            )
            return json_response(obj, status=201, warnings=warnings)
        if info.verb == "update":
            obj, warnings = cluster.replace(
                rt, namespace, info.name, await self._body(request), field_validation, user=user
            )
            return json_response(obj, warnings=warnings)
        if info.verb == "patch":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            obj, warnings = cluster.patch(
                rt, namespace, info.name, content_type, await self._body(request), field_validation, user=user
            )
            return json_response(obj, warnings=warnings)
        if info.verb == "delete":
            options = await self._body(request, required=False) or {}
            for key in ("gracePeriodSeconds", "propagationPolicy"):
                if key in query:
                    options[key] = query[key]
            return json_response(cluster.delete(rt, namespace, info.name, options, user=user))
        if info.verb == "deletecollection":
            return json_response(
                cluster.delete_collection(
                    rt, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""), user=user
                )
            )
        raise errors.method_not_allowed()

    def _list_body(self, rt: ResourceType, namespace: str, query: Any) -> dict[str, Any]:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as exc:
            raise errors.bad_request(f"invalid limit: {query.get('limit')}") from exc
        result = self.cluster.list(
            rt,
            namespace or None,
            query.get("labelSelector", ""),
            query.get("fieldSelector", ""),
            limit,
            query.get("continue", ""),
        )
        items = result.items
        if not rt.custom:
            # Built-in lists omit apiVersion/kind on items; custom resource lists keep them.
            items = [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in items]
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            meta["remainingItemCount"] = result.remaining
        return {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": meta, "items": items}

    async def _body(self, request: web.Request, required: bool = True) -> Any:
        raw = await request.read()
        if not raw.strip():
            if required:
                raise errors.bad_request("the body of the request was empty")
            return None
        content_type = request.headers.get("Content-Type", "")
        if "protobuf" in content_type or "cbor" in content_type:
            raise ApiError(415, "UnsupportedMediaType", f"localcluster speaks JSON only, not {content_type}")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc

    # -- watch -------------------------------------------------------------------------------------
    async def watch(self, request: web.Request, rt: ResourceType, namespace: str) -> web.StreamResponse:
        query = request.query
        labels_match = label_matcher(query.get("labelSelector", ""))
        fields_match = field_matcher(query.get("fieldSelector", ""), rt.plural)

        def matches(obj: dict[str, Any] | None) -> bool:
            return obj is not None and labels_match(obj) and fields_match(obj)

        try:
            timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
            rv_text = query.get("resourceVersion", "")
            since = int(rv_text) if rv_text not in ("", "0") else None
            bookmarks = _parse_bool(query.get("allowWatchBookmarks", "false"))
        except ValueError as exc:
            raise errors.bad_request(f"invalid watch parameters: {exc}") from exc

        store = self.cluster.store
        initial: list[tuple[str, dict[str, Any]]] = []
        error_event: dict[str, Any] | None = None
        sub = None
        try:
            backlog, sub = store.subscribe(rt, namespace or None, since)
        except Expired as exc:
            backlog = []
            error_event = {"type": "ERROR", "object": ApiError(410, "Expired", str(exc)).status()}
        if since is None and error_event is None:
            # No resourceVersion: "get state and start at most recent" - synthetic ADDED for what exists.
            initial = [("ADDED", obj) for obj in store.list(rt, namespace or None) if matches(obj)]

        def translate(event: WatchEvent) -> tuple[str, dict[str, Any]] | None:
            now = matches(event.object)
            if event.type == "MODIFIED":
                before = matches(event.previous)
                if now:
                    return ("MODIFIED" if before else "ADDED"), event.object
                return ("DELETED", event.object) if before else None
            return (event.type, event.object) if now else None

        drop_after = self.faults.take_watch_drop(rt.plural)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        transport = request.transport
        await response.prepare(request)
        sent = 0
        task = asyncio.current_task()
        if task is not None:
            self._long_running.add(task)
        deadline = time.monotonic() + timeout
        next_bookmark = _next_bookmark(time.monotonic(), deadline) if bookmarks else None
        try:
            if error_event is not None:
                await response.write((json.dumps(error_event) + "\n").encode())
                return response
            pending = initial + [t for t in map(translate, backlog) if t is not None]
            while True:
                if drop_after is not None and sent >= drop_after and transport is not None:
                    transport.abort()  # mid-stream, no final chunk: the client sees a broken connection
                    return response
                if pending:
                    kind, obj = pending.pop(0)
                    await response.write((json.dumps({"type": kind, "object": obj}) + "\n").encode())
                    sent += 1
                    continue
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0 or transport is None or transport.is_closing():
                    break
                if next_bookmark is not None and now >= next_bookmark:
                    pending.append(("BOOKMARK", _bookmark_object(rt, store.resource_version)))
                    next_bookmark = _next_bookmark(now, deadline)
                    continue
                wait = min(remaining, 1.0)
                if next_bookmark is not None:
                    wait = max(0.0, min(wait, next_bookmark - now))
                try:
                    assert sub is not None
                    event = await asyncio.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    continue
                translated = translate(event)
                if translated is not None:
                    pending.append(translated)
            await response.write_eof()
            return response
        finally:
            if sub is not None:
                store.unsubscribe(sub)
            if task is not None:
                self._long_running.discard(task)

    async def pod_subresource(
        self, request: web.Request, info: RequestInfo, user: User
    ) -> web.StreamResponse:
        if request.method not in POD_SUBRESOURCES[info.subresource]:
            raise errors.method_not_allowed()
        if info.subresource == "log":
            return await podstreams.pod_log(request, self.cluster, info.namespace, info.name)
        if info.verb != "create":
            # A websocket upgrade (GET) needs `create` too (AuthorizePodWebsocketUpgradeCreatePermission).
            self.authorize(user, dataclasses.replace(info, verb="create"))
        return await podstreams.pod_exec(request, self.cluster, info.namespace, info.name)

    # -- subresources.kubevirt.io ------------------------------------------------------------------
    async def vmi_subresource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if (
            info.version not in ("v1", "v1alpha3")
            or info.resource != "virtualmachineinstances"
            or not info.namespace
            or not info.name
            or info.subresource not in VMI_SUBRESOURCES
        ):
            raise errors.path_not_found()
        if request.method != VMI_SUBRESOURCES[info.subresource]:
            raise errors.method_not_allowed()
        namespace, name = info.namespace, info.name
        if info.subresource in ("pause", "unpause"):
            await self._body(request, required=False)
            await self.cluster.set_paused(
                namespace,
                name,
                paused=info.subresource == "pause",
                condition_delay=self.faults.pause_condition_delay(),
            )
            return web.Response(status=200)
        if info.subresource == "vnc/screenshot":
            png = await self.cluster.screenshot(namespace, name)
            return web.Response(body=png, content_type="image/png")
        if info.subresource == "portforward":
            return await self.port_forward(request, namespace, name, info.subresource_args)
        return await self.stream(request, namespace, name, info.subresource)

    async def port_forward(
        self, request: web.Request, namespace: str, name: str, args: tuple[str, ...]
    ) -> web.StreamResponse:
        """virt-api's portforward (pkg/virt-api/rest/portforward.go): the TCP dial happens before the
        upgrade, so a refused port is an HTTP error, not a websocket that closes; then binary frames
        carry the stream both ways and the server pings every second (streamer.go's keepalive)."""
        if not args or len(args) > 2:
            raise errors.path_not_found()
        port_text, protocol = args[0], (args[1] if len(args) > 1 else "tcp")
        if protocol != "tcp":
            raise errors.bad_request(f"the local cluster forwards tcp only, not {protocol}")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            message = f"dialing VM: dial tcp: address {port_text}: invalid port"
            raise ApiError(500, "InternalError", f"Internal error occurred: {message}")
        websocket = web.WebSocketResponse(
            protocols=(WEBSOCKET_PROTOCOL,), max_msg_size=MAX_BODY_BYTES, compress=False
        )
        if not websocket.can_prepare(request).ok:
            raise errors.bad_request(
                "websocket: the client is not using the websocket protocol: 'upgrade' token "
                "not found in 'Connection' header"
            )
        reader, writer = await self.cluster.open_port(namespace, name, int(port_text))
        transport = request.transport
        await websocket.prepare(request)
        drop_after = self.faults.take_websocket_drop("portforward")

        async def guest_to_client() -> None:
            sent = 0
            while data := await reader.read(STREAM_CHUNK_BYTES):
                if drop_after is not None and sent + len(data) >= drop_after:
                    if drop_after > sent:
                        await websocket.send_bytes(data[: drop_after - sent])
                    if transport is not None:
                        transport.abort()
                    return
                await websocket.send_bytes(data)
                sent += len(data)
            await websocket.close()

        async def keepalive() -> None:
            while not websocket.closed:
                await asyncio.sleep(1.0)
                await websocket.ping(b"keep alive")

        if drop_after == 0 and transport is not None:
            transport.abort()
        tasks = [asyncio.create_task(guest_to_client()), asyncio.create_task(keepalive())]
        current = asyncio.current_task()
        assert current is not None
        self._long_running.add(current)
        try:
            async for message in websocket:
                if message.type == WSMsgType.BINARY:
                    writer.write(message.data)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            writer.close()
            if not websocket.closed:
                await websocket.close()
            self._long_running.discard(current)
        return websocket

    async def stream(self, request: web.Request, namespace: str, name: str, kind: str) -> web.StreamResponse:
        """Relay a console/vnc websocket to the runtime's byte stream (binary frames only)."""
        self.cluster.check_stream(namespace, name, kind)  # 400 not running, 409 failed: before the upgrade
        key = (namespace, name, kind)
        active = self._streams.get(key)
        if active is not None and active.websocket.closed:
            active = None
        if active is not None and kind == "vnc" and request.query.get("preserveSession") == "true":
            raise ApiError(
                500,
                "InternalError",
                f"Internal error occurred: {PRESERVE_SESSION_REFUSED}",
                causes=[errors.Cause(reason="", message=PRESERVE_SESSION_REFUSED)],
            )
        # No permessage-deflate (virt-api offers none either; deflating console bytes costs more CPU
        # than it saves on loopback), and a write buffer that holds a few whole frames.
        websocket = web.WebSocketResponse(
            protocols=(WEBSOCKET_PROTOCOL,),
            max_msg_size=MAX_BODY_BYTES,
            compress=False,
            writer_limit=STREAM_CHUNK_BYTES,
        )
        if not websocket.can_prepare(request).ok:
            raise errors.bad_request(
                "websocket: the client is not using the websocket protocol: 'upgrade' token "
                "not found in 'Connection' header"
            )
        reader, writer = await self.cluster.open_stream(namespace, name, kind)  # type: ignore[arg-type]
        transport = request.transport
        await websocket.prepare(request)
        if active is not None:
            active.kick()  # a new connection kicks the existing one off, as virt-handler does
        drop_after = self.faults.take_websocket_drop(kind)

        async def guest_to_client() -> None:
            sent = 0
            while data := await reader.read(STREAM_CHUNK_BYTES):
                if drop_after is not None and sent + len(data) >= drop_after:
                    if drop_after > sent:
                        await websocket.send_bytes(data[: drop_after - sent])
                    if transport is not None:
                        transport.abort()
                    return
                await websocket.send_bytes(data)
                sent += len(data)
            await websocket.close()

        if drop_after == 0 and transport is not None:
            transport.abort()
        pump = asyncio.create_task(guest_to_client())
        current = asyncio.current_task()
        assert current is not None
        self._streams[key] = _Stream(websocket, current, transport)
        self._long_running.add(current)
        try:
            async for message in websocket:
                if message.type == WSMsgType.BINARY:
                    writer.write(message.data)
                    await writer.drain()
                # Text frames are dropped silently, like virt-api does.
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            writer.close()
            if not websocket.closed:
                await websocket.close()
            if self._streams.get(key, None) is not None and self._streams[key].websocket is websocket:
                del self._streams[key]
            self._long_running.discard(current)
        return websocket

    # -- the control API ---------------------------------------------------------------------------
    async def control(self, request: web.Request, user: User) -> web.Response:
        if "system:masters" not in user.groups:
            raise ApiError(
                403, "Forbidden", f'forbidden: User "{user.name}" cannot use the localcluster control API'
            )
        path = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        method = request.method
        if path == "calls":
            if method == "GET":
                return json_response([dict(c) for c in self.faults.calls])
            if method == "DELETE":
                self.faults.calls.clear()
                return json_response({})
            raise errors.method_not_allowed()
        if path == "faults":
            if method == "GET":
                return json_response(self.faults.describe())
            if method == "DELETE":
                self.faults.clear()
                self.cluster.retry_waiting()
                return json_response(self.faults.describe())
            raise errors.method_not_allowed()
        if path == "faults/fail-vmi":
            if method != "POST":
                raise errors.method_not_allowed()
            spec = await self._body(request, required=True)
            try:
                namespace, name = str(spec["namespace"]), str(spec["name"])
                message = str(spec.get("message", "the guest crashed"))
            except (KeyError, TypeError) as exc:
                raise errors.bad_request(f"bad fault specification for fail-vmi: {exc}") from exc
            await self.cluster.fail_vmi(namespace, name, message)
            return json_response(self.faults.describe())
        if path.startswith("faults/"):
            if method not in ("POST", "PUT"):
                raise errors.method_not_allowed()
            spec = await self._body(request, required=False) or {}
            if not isinstance(spec, dict):
                raise errors.bad_request("fault specification must be an object")
            self.faults.configure(path[len("faults/") :], spec)
            self.cluster.retry_waiting()
            return json_response(self.faults.describe())
        raise errors.path_not_found()
