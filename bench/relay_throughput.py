"""Console relay benchmark: throughput and small-frame round trips, three relays side by side.

    .venv/bin/python bench/relay_throughput.py [--streams 1,10,100] [--megabytes 64] [--rounds 2000]
                                               [--repeat 3] [--only a,a2,b,c,d]

(a) the console proxy (vncproxy: Channels under uvicorn, as deployed) → local cluster `console`
    websocket (echo guest);
(b) websockify 0.13 → a TCP echo server (one hop fewer: the practical ceiling of a Python relay);
(c) a plain `websockets` websocket-to-websocket relay → the same local cluster console (the 2021
    prototype's design).
(a') the same proxy (a second server) in front of a bare TLS websocket echo instead of the local
    cluster: the proxy's own cost, without the local cluster's aiohttp + socketpair + echo guest.
Everything runs on loopback, in separate processes; every loop is bounded. The client sends 64 KiB
binary frames while reading the echo (throughput, MB/s of echoed payload), then ping-pongs 64-byte
frames one at a time per stream (round trip, median and p99). Row (d) talks to the local cluster
directly, without any relay: the ceiling of (a) and (c), whose upstream it is.
The relays take turns, `--repeat` times per stream count, and each row is the median of its runs.
"server CPU" is the CPU time (user + system, from /proc) the relay and its upstream processes spent
per MB echoed during the throughput phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FRAME = 64 * 1024
SMALL = 64
BANNER_END = b"\r\n"


def setup_django(state: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "laborchestrator.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{state / 'bench.sqlite3'}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_instance(kubeconfig: str, machines: int):
    """A running lab instance of `machines` machines, started the way the application does."""
    from django.conf import settings

    from accounts.models import User
    from labs import cluster, lifecycle
    from labs.models import Lab, LabInstance, LabMachine, VMImage

    settings.KUBECONFIG, settings.KUBE_CONTEXT = kubeconfig, "laborchestrator"
    cluster.reset_client()
    user = User.objects.create_user(username="bench", password="bench-pw-1", is_staff=True)
    image = VMImage.objects.create(
        name="bench", container_disk_image="example.org/bench:1", default_username="u"
    )
    lab = Lab.objects.create(name="Bench", slug="bench", namespace_prefix="bench", published=True)
    for index in range(machines):
        LabMachine.objects.create(
            lab=lab, name=f"vm{index}", image=image, cores=1, memory_mib=64, order=index
        )
    instance = lifecycle.instance_start(user=user, lab=lab)
    deadline = time.monotonic() + 60
    while lifecycle.instance_refresh(instance=instance).status != LabInstance.Status.RUNNING:
        if time.monotonic() > deadline:
            raise SystemExit(f"instance not running: {instance.status} {instance.last_error}")
        time.sleep(0.1)
    return user, instance


def session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    async def echo(reader, writer):
        try:
            while data := await reader.read(262144):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()
    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
        async with server:
            await server.serve_forever()
    asyncio.run(main())
    """
)

PLAIN_RELAY = textwrap.dedent(
    """
    import asyncio, ssl, sys
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
    port, upstream_base, token, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=ca)
    async def relay(browser):
        machine = browser.request.path.rsplit("/", 1)[-1]
        async with connect(f"{upstream_base}/{machine}/console", ssl=context, compression=None,
                           subprotocols=["plain.kubevirt.io"], max_size=None, proxy=None,
                           additional_headers={"Authorization": f"Bearer {token}"}) as upstream:
            async def pump(source, target):
                try:
                    async for message in source:
                        await target.send(message)
                except ConnectionClosed:
                    pass
            tasks = [asyncio.create_task(pump(browser, upstream)),
                     asyncio.create_task(pump(upstream, browser))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
    async def main():
        async with serve(relay, "127.0.0.1", port, compression=None, max_size=None) as server:
            await server.serve_forever()
    asyncio.run(main())
    """
)


# (a') upstream: a bare TLS websocket echo (same certificate, banner and read size as the local
# cluster's echo console), to tell the proxy's own cost from the local cluster's.
RAW_UPSTREAM = textwrap.dedent(
    """
    import asyncio, ssl, sys
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async def echo(ws):
        try:
            await ws.send(b"raw echo upstream\\r\\n")
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
    async def main():
        async with serve(echo, "127.0.0.1", port, ssl=context, compression=None, max_size=None,
                         subprotocols=["plain.kubevirt.io"]) as server:
            await server.serve_forever()
    asyncio.run(main())
    """
)


def process(args: list[str], port: int, log: Path):
    """A helper server (echo, websockify, relays) that listens on `port`, stopped afterwards."""
    from tests.vncproxy.app_server import listening_process

    return listening_process(args, port, log, dict(os.environ))


async def open_stream(url: str, headers: dict[str, str], banner: bool, ssl_context=None):
    from websockets.asyncio.client import connect

    extra = {"ssl": ssl_context, "subprotocols": ["plain.kubevirt.io"]} if ssl_context else {}
    conn = await connect(
        url, additional_headers=headers, compression=None, max_size=None, proxy=None, **extra
    )
    if banner:  # the local cluster's echo console greets first
        data = b""
        while not data.endswith(BANNER_END):
            data += await conn.recv(decode=False)
    return conn


async def throughput(conns, total_bytes: int) -> float:
    per_stream = max(FRAME, total_bytes // len(conns) // FRAME * FRAME)
    chunk = os.urandom(FRAME)

    async def one(conn) -> None:
        async def send() -> None:
            for _ in range(per_stream // FRAME):
                await conn.send(chunk)

        sender = asyncio.create_task(send())
        received = 0
        while received < per_stream:
            received += len(await asyncio.wait_for(conn.recv(decode=False), 30))
        await sender

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in conns))
    echoed = per_stream * len(conns)
    return echoed / (time.perf_counter() - started) / 1e6, echoed


async def round_trips(conns, rounds: int) -> list[float]:
    payload = os.urandom(SMALL)
    samples: list[float] = []

    async def one(conn) -> None:
        for _ in range(rounds):
            started = time.perf_counter()
            await conn.send(payload)
            received = 0
            while received < SMALL:
                received += len(await asyncio.wait_for(conn.recv(decode=False), 30))
            samples.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(one(c) for c in conns))
    return samples


def process_tree(pids: list[int]) -> list[int]:
    """The processes and all their descendants (websockify forks one process per connection)."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def measure(
    name: str,
    urls: list[str],
    headers: dict[str, str],
    banner: bool,
    args,
    ssl_context=None,
    server_pids: tuple[int, ...] = (),
) -> dict:
    conns = [await open_stream(url, headers, banner, ssl_context) for url in urls]
    try:
        await round_trips(conns, 20)  # warm up
        pids = process_tree(list(server_pids))
        cpu_before = cpu_seconds(pids)
        mbps, echoed = await throughput(conns, args.megabytes * 1024 * 1024)
        # CPU the relay and its upstream spent per MB echoed: steadier than MB/s on a busy machine.
        server_ms_per_mb = (cpu_seconds(pids) - cpu_before) * 1000 / (echoed / 1e6)
        rounds = max(20, args.rounds // len(conns))
        samples = sorted(await round_trips(conns, rounds))
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return {
        "relay": name,
        "streams": len(urls),
        "mbps": mbps,
        "median": statistics.median(samples),
        "p99": p99,
        "cpu": server_ms_per_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", default="1,10,100")
    parser.add_argument(
        "--megabytes", type=int, default=64, help="echoed per measurement, all streams together"
    )
    parser.add_argument("--rounds", type=int, default=2000, help="round trips per measurement, all streams")
    parser.add_argument(
        "--only",
        default="a,a2,b,c,d",
        help="relays: a, b, c; a2: the proxy before a bare TLS websocket echo; d: no relay, the cluster",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per relay and stream count, interleaved"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    only = set(args.only.split(","))
    from localcluster.harness import start_local_cluster
    from tests.vncproxy.app_server import free_port, run_app_server

    results = []
    with (
        tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp,
        start_local_cluster(
            Path(tmp) / "cluster", runtime="none", extra_args=("--phase-delay-ms", "5")
        ) as local,
    ):
        state = Path(tmp)
        setup_django(state)
        from django.conf import settings

        user, instance = make_instance(str(local.kubeconfig), max(counts))
        cookie = session_cookie(user)
        server_env = {
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "SECRET_KEY": settings.SECRET_KEY,
            "KUBECONFIG": str(local.kubeconfig),
            "KUBE_CONTEXT": "laborchestrator",
            "CONSOLE_MAX_STREAMS_PER_USER": "1000",
            "LOG_LEVEL": "WARNING",
        }
        echo_port, ws_port, plain_port = free_port(), free_port(), free_port()
        upstream_base = (
            f"{local.url.replace('https://', 'wss://')}/apis/subresources.kubevirt.io/v1/namespaces/"
            f"{instance.namespace}/virtualmachineinstances"
        )
        with contextlib.ExitStack() as stack:
            proxy = stack.enter_context(run_app_server(server_env, state / "server.log"))
            echo = stack.enter_context(
                process([sys.executable, "-c", ECHO_SERVER, str(echo_port)], echo_port, state / "echo.log")
            )
            websockify = Path(sys.executable).with_name("websockify")
            websockify_process = stack.enter_context(
                process(
                    [str(websockify), f"127.0.0.1:{ws_port}", f"127.0.0.1:{echo_port}"],
                    ws_port,
                    state / "websockify.log",
                )
            )
            plain = stack.enter_context(
                process(
                    [
                        sys.executable,
                        "-c",
                        PLAIN_RELAY,
                        str(plain_port),
                        upstream_base,
                        local.token("laborchestrator"),
                        str(local.ca_file),
                    ],
                    plain_port,
                    state / "plain.log",
                )
            )
            if "a2" in only:
                raw_port = free_port()
                raw_upstream = stack.enter_context(
                    process(
                        [
                            sys.executable,
                            "-c",
                            RAW_UPSTREAM,
                            str(raw_port),
                            str(local.state_dir / "server.crt"),
                            str(local.state_dir / "server.key"),
                        ],
                        raw_port,
                        state / "raw.log",
                    )
                )
                raw_kubeconfig = state / "raw-kubeconfig"
                raw_kubeconfig.write_text(
                    Path(local.kubeconfig).read_text().replace(local.url, f"https://127.0.0.1:{raw_port}")
                )
                raw_proxy = stack.enter_context(
                    run_app_server(
                        {**server_env, "KUBECONFIG": str(raw_kubeconfig)}, state / "server-raw.log"
                    )
                )
            cluster_pid = local.process.pid
            relays = {}
            if "a" in only:
                relays["(a) console proxy (uvicorn)"] = lambda n: (
                    [
                        f"ws://{proxy.address}/ws/instances/{instance.pk}/machines/vm{i}/serial"
                        for i in range(n)
                    ],
                    {"Origin": f"http://{proxy.address}", "Cookie": cookie},
                    True,
                    None,
                    (proxy.pid, cluster_pid),
                )
            if "a2" in only:
                relays["(a') proxy → bare TLS ws echo"] = lambda n: (
                    [
                        f"ws://{raw_proxy.address}/ws/instances/{instance.pk}/machines/vm{i}/serial"
                        for i in range(n)
                    ],
                    {"Origin": f"http://{raw_proxy.address}", "Cookie": cookie},
                    True,
                    None,
                    (raw_proxy.pid, raw_upstream.pid),
                )
            if "b" in only:
                relays["(b) websockify → TCP echo"] = lambda n: (
                    [f"ws://127.0.0.1:{ws_port}/" for _ in range(n)],
                    {},
                    False,
                    None,
                    (websockify_process.pid, echo.pid),
                )
            if "c" in only:
                relays["(c) plain websockets relay"] = lambda n: (
                    [f"ws://127.0.0.1:{plain_port}/vm{i}" for i in range(n)],
                    {},
                    True,
                    None,
                    (plain.pid, cluster_pid),
                )
            if "d" in only:
                relays["(d) no relay: local cluster"] = lambda n: (
                    [f"{upstream_base}/vm{i}/console" for i in range(n)],
                    {"Authorization": f"Bearer {local.token('laborchestrator')}"},
                    True,
                    local.ssl_context(),
                    (cluster_pid,),
                )
            for n in counts:
                # Interleaved (a, b, c, ..., a, b, c, ...), so that a slow moment of a shared machine
                # falls on every relay alike; each relay's row is the median of its repeats.
                runs: dict[str, list[dict]] = {name: [] for name in relays}
                for _ in range(args.repeat):
                    for name, target in relays.items():
                        urls, headers, banner, ssl_context, pids = target(n)
                        row = asyncio.run(measure(name, urls, headers, banner, args, ssl_context, pids))
                        runs[name].append(row)
                        print_row(row)
                results.extend(median_row(rows) for rows in runs.values())
    print()
    print(f"medians of {args.repeat} interleaved runs; load average at the end: {os.getloadavg()[0]:.2f}")
    ceiling = {row["streams"]: row for row in results if row["relay"].startswith("(b)")}
    print(
        "| relay | streams | throughput MB/s | vs (b) | RTT median ms | minus (b) ms | RTT p99 ms "
        "| server CPU ms/MB | CPU vs (b) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        b = ceiling.get(row["streams"])
        ratio = f"{row['mbps'] / b['mbps']:.2f}" if b else "-"
        delta = f"{row['median'] - b['median']:+.3f}" if b else "-"
        cpu_ratio = f"{row['cpu'] / b['cpu']:.2f}" if b else "-"
        print(
            f"| {row['relay']} | {row['streams']} | {row['mbps']:.0f} | {ratio} "
            f"| {row['median']:.3f} | {delta} | {row['p99']:.3f} | {row['cpu']:.1f} | {cpu_ratio} |"
        )


def median_row(rows: list[dict]) -> dict:
    """One relay's result over its repeats: the median of each measure."""
    return {
        "relay": rows[0]["relay"],
        "streams": rows[0]["streams"],
        **{key: statistics.median(row[key] for row in rows) for key in ("mbps", "median", "p99", "cpu")},
    }


def print_row(row: dict) -> None:
    print(
        f"{row['relay']:30} streams={row['streams']:3} {row['mbps']:7.0f} MB/s  "
        f"rtt median {row['median']:.3f} ms  p99 {row['p99']:.3f} ms  server cpu {row['cpu']:.1f} ms/MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
