"""Console relay leak check: file descriptors, asyncio tasks and memory after many streams.

    .venv/bin/python bench/relay_leaks.py [--streams 10000] [--parallel 10]

The app server (uvicorn, configured as laborchestrator/serve.py does) runs in this process, so its
tasks can be counted; the local cluster (`none` runtime, echo consoles) in its own. Streams open
`--parallel` at a time through the whole stack (session cookie, limits, channel layer, upstream TLS
websocket), each reads the echo console's banner and an echo; a third of the clients vanish
without a close frame (their TCP connection aborted), the rest close normally. After a warm-up
round, the counts are taken before and after; the script fails if the server is left with more
descriptors or tasks than it had.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.relay_throughput import make_instance, session_cookie, setup_django  # noqa: E402


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_stream(url: str, cookie: str, abort: bool) -> None:
    from websockets.asyncio.client import connect

    origin = "http://" + url.split("/")[2]  # a page of the server's own origin
    conn = await connect(
        url, additional_headers={"Origin": origin, "Cookie": cookie}, compression=None, proxy=None
    )
    try:
        data = b""
        while not data.endswith(b"\r\n"):
            data += await asyncio.wait_for(conn.recv(decode=False), 30)
        await conn.send(b"ping")
        echoed = b""
        while len(echoed) < 4:
            echoed += await asyncio.wait_for(conn.recv(decode=False), 30)
        assert echoed == b"ping", echoed
    finally:
        if abort:
            conn.transport.abort()
        await conn.close()


async def run(args, url_for, cookie: str, port: int) -> int:
    import uvicorn

    from laborchestrator import serve

    config = uvicorn.Config(
        serve.APPLICATION,
        host="127.0.0.1",
        port=port,
        http="h11",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=serve.BROWSER_MAX_MESSAGE_BYTES,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    own_tasks = {asyncio.current_task(), serving}

    async def batch(start: int, count: int) -> None:
        await asyncio.gather(
            *(
                one_stream(url_for(i % args.machines), cookie, abort=(start + i) % 3 == 0)
                for i in range(count)
            )
        )

    async def settle() -> tuple[int, int]:
        """The server's descriptors and tasks, once closing connections have finished closing."""
        previous = None
        for _ in range(100):
            await asyncio.sleep(0.1)
            counts = (descriptors(), len(asyncio.all_tasks() - own_tasks))
            if counts == previous:
                return counts
            previous = counts
        return counts

    await batch(0, args.parallel)  # warm: database connections, TLS contexts, imports
    fds_before, tasks_before = await settle()
    rss_before = rss_mib()
    started = time.monotonic()
    done = 0
    while done < args.streams:
        count = min(args.parallel, args.streams - done)
        await batch(done, count)
        done += count
        if done % 2000 == 0:
            print(
                f"{done:6} streams  fds {descriptors()}  tasks {len(asyncio.all_tasks()) - 2}  "
                f"rss {rss_mib():.0f} MiB",
                flush=True,
            )
    elapsed = time.monotonic() - started
    fds_after, tasks_after = await settle()
    rss_after = rss_mib()
    server.should_exit = True
    await serving
    print(
        f"{args.streams} streams in {elapsed:.0f} s ({args.parallel} at a time, a third aborted): "
        f"descriptors {fds_before} -> {fds_after}, tasks {tasks_before} -> {tasks_after}, "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    return 0 if fds_after <= fds_before and tasks_after <= tasks_before else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--machines", type=int, default=10, help="machines of the lab instance")
    args = parser.parse_args()
    os.environ["CONSOLE_MAX_STREAMS_PER_USER"] = str(args.parallel + args.machines)
    from localcluster.harness import start_local_cluster
    from tests.vncproxy.app_server import free_port

    with (
        tempfile.TemporaryDirectory(prefix="relay-leaks-") as tmp,
        start_local_cluster(Path(tmp) / "cluster", runtime="none") as local,
    ):
        os.environ["KUBECONFIG"] = str(local.kubeconfig)
        os.environ["KUBE_CONTEXT"] = "laborchestrator"
        setup_django(Path(tmp))
        user, instance = make_instance(str(local.kubeconfig), args.machines)
        cookie = session_cookie(user)
        port = free_port()

        def url_for(machine: int) -> str:
            return f"ws://127.0.0.1:{port}/ws/instances/{instance.pk}/machines/vm{machine}/serial"

        with contextlib.suppress(KeyboardInterrupt):
            sys.exit(asyncio.run(run(args, url_for, cookie, port)))


if __name__ == "__main__":
    main()
