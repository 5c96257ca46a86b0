"""pods/log and pods/exec as kube-apiserver and the kubelet serve them.

pods/exec speaks the channel protocol of k8s.io/apimachinery/pkg/util/remotecommand (constants.go)
over a websocket (k8s.io/apiserver/pkg/util/wsstream/conn.go): every binary message starts with a
channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. `v5.channel.k8s.io` adds the close
signal (a message `255, <channel>`: that channel, in practice stdin, is closed); `v4.channel.k8s.io`
has none. The error channel carries a metav1.Status once the command ended: Success, or Failure
with reason NonZeroExitCode and the exit code as the cause `ExitCode`
(pkg/kubelet/cri/streaming/remotecommand/websocket.go and httpstream.go, writeStatus). The resize
channel carries `{"Width": w, "Height": h}` (remotecommand.TerminalSize). Text frames are ignored.
Before the upgrade: 400 for a completed pod ("cannot exec into a container in a completed pod;
current phase is ..."; pkg/registry/core/pod/rest/subresources.go via pod strategy), and
"container not found" when the container does not run, as the kubelet answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from localcluster import errors
from localcluster.cluster import Cluster
from localcluster.containers.exec import ExecFailed, ExecProcess
from localcluster.containers.runner import ContainerNotRunning
from localcluster.errors import ApiError

log = logging.getLogger(__name__)

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
# Output is read in chunks and each is sent before the next read: a container flooding stdout is
# slowed to the client's pace, never buffered without bound.
READ_CHUNK = 32768


def _flag(query: Any, key: str, default: bool = False) -> bool:
    value = query.get(key)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


async def pod_log(request: web.Request, cluster: Cluster, namespace: str, name: str) -> web.StreamResponse:
    query = request.query
    pod, container_name = cluster.pod_container(namespace, name, query.get("container"))
    state = cluster.containers.container(namespace, name, container_name)
    previous = _flag(query, "previous")
    if state is None:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        status = next((s for s in statuses if s["name"] == container_name), {})
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason", "ContainerCreating")
        raise errors.bad_request(
            f'container "{container_name}" in pod "{name}" is waiting to start: {reason}'
        )
    buffer = state.previous_log if previous else state.log
    if buffer is None:
        raise errors.bad_request(
            f'previous terminated container "{container_name}" in pod "{name}" not found'
        )
    data = bytes(buffer.data)
    if "tailLines" in query:
        try:
            lines = int(query["tailLines"])
        except ValueError as exc:
            raise errors.bad_request(f"tailLines: invalid value {query['tailLines']!r}") from exc
        data = b"".join(data.splitlines(keepends=True)[-lines:]) if lines > 0 else b""
    if not _flag(query, "follow"):
        return web.Response(body=data, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(data)
    offset = buffer.total
    while not buffer.closed and state.running:
        await buffer.changed.wait()
        chunk = buffer.since(offset)
        offset = buffer.total
        if chunk:
            await response.write(chunk)
    await response.write_eof()
    return response


async def pod_exec(request: web.Request, cluster: Cluster, namespace: str, name: str) -> web.StreamResponse:
    query = request.query
    pod, container_name = cluster.pod_container(namespace, name, query.get("container"))
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    command = query.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least 1 command")
    tty = _flag(query, "tty")
    use_stdin, use_stdout, use_stderr = (
        _flag(query, "stdin"),
        _flag(query, "stdout", True),
        _flag(query, "stderr", True),
    )
    if tty and use_stderr:
        use_stderr = (
            False  # a terminal has one output stream (remotecommand: stderr with tty is an error upstream)
        )
    if not (use_stdin or use_stdout or use_stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    try:
        runc_command = cluster.containers.exec_command(namespace, name, container_name, list(command), tty)
    except ContainerNotRunning as exc:
        raise errors.bad_request(f"unable to upgrade connection: {exc}") from exc
    websocket = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, autoping=True)
    if not websocket.can_prepare(request).ok:
        raise errors.bad_request("websocket: the client is not using the websocket protocol")
    try:
        process = await ExecProcess.start(runc_command, tty=tty)
    except (ExecFailed, OSError) as exc:
        raise ApiError(500, "InternalError", f"Internal error occurred: {exc}") from exc
    await websocket.prepare(request)
    v5 = websocket.ws_protocol == "v5.channel.k8s.io"
    # wsstream's conn.go: an empty message on the lowest writable channel says the stream is open.
    await websocket.send_bytes(bytes([STDOUT]))

    async def pump(channel: int, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                chunk = await reader.read(READ_CHUNK)
            except OSError:  # EIO from a terminal whose process ended
                chunk = b""
            if not chunk:
                return
            if (channel == STDOUT and use_stdout) or (channel == STDERR and use_stderr):
                with contextlib.suppress(ConnectionError):
                    await websocket.send_bytes(bytes([channel]) + chunk)

    async def from_client() -> None:
        async for message in websocket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            data: bytes = message.data
            channel, payload = data[0], data[1:]
            if channel == STDIN and use_stdin:
                await process.write_stdin(payload)
            elif channel == RESIZE:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    size = json.loads(payload)
                    process.resize(int(size["Width"]), int(size["Height"]))
            elif channel == CLOSE_SIGNAL and v5 and payload[:1] == bytes([STDIN]):
                process.close_stdin()

    pumps = [asyncio.ensure_future(pump(ch, r)) for ch, r in await process.output_streams()]
    client = asyncio.ensure_future(from_client())
    if not use_stdin and process.master is None:
        process.close_stdin()
    try:
        exited = asyncio.ensure_future(process.wait())
        done, _ = await asyncio.wait({exited, client}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps), 2.0)
            code = exited.result()
            await websocket.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code, list(command))).encode())
            await websocket.close()
        else:
            process.kill()  # the client went away: the command goes too
            await exited
    finally:
        for task in (*pumps, client):
            task.cancel()
        process.close()
    return websocket


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"{_go_list(command)}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"
