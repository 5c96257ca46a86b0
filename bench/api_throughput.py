"""Requests per second and median latency of the REST API's lists, served by the app server (uvicorn).

    .venv/bin/python bench/api_throughput.py [--requests 400] [--concurrency 10] [--profile PATH]

Prepares a throw-away SQLite database (or the one in --database-url) with 50 labs of two machines
and 200 lab instances of 20 students, starts the app server on a free loopback port as a subprocess, and
drives it with a bounded aiohttp client: a fixed number of requests per endpoint, at most
`--concurrency` in flight. Authenticates with a JWT, like a script would. Stops the server at the end.

Besides requests per second (which on a shared machine moves with everyone else's load), it reports
the app server's CPU time per request (user + system, from /proc) and what that makes one process
serve with a core of its own: the capacity of a replica, much steadier than the wall clock.
`--profile /api/labs/` instead profiles that GET in-process with pyinstrument (a dev dependency) and
prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABS, INSTANCES, STUDENTS = 50, 200, 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="timed requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight at once")
    parser.add_argument("--database-url", default="", help="default: a new SQLite file in a temp dir")
    parser.add_argument("--profile", metavar="PATH", help="profile GET PATH in-process as staff instead")
    return parser.parse_args()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database(env: dict[str, str]) -> dict[str, str]:
    """Migrate and fill the database; returns a JWT per role."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
    from tutorials.models import Tutorial

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    staff = users.create_user("bench-staff", password=secrets.token_hex(8), is_staff=True)
    students = [
        users.create_user(f"bench-student-{i}", password=secrets.token_hex(8)) for i in range(STUDENTS)
    ]
    image = VMImage.objects.create(
        name="Cirros", container_disk_image="a/cirros:1", default_username="cirros"
    )
    labs = []
    for index in range(LABS):
        lab = Lab.objects.create(
            name=f"Lab {index}", slug=f"lab-{index}", namespace_prefix=f"lab{index}", published=True
        )
        for machine in range(2):
            LabMachine.objects.create(lab=lab, name=f"vm{machine}", image=image, order=machine)
        Tutorial.objects.create(title=f"Tutorial {index}", slug=f"tutorial-{index}", published=True).labs.add(
            lab
        )
        labs.append(lab)
    for index in range(INSTANCES):
        instance = LabInstance.objects.create(
            lab=labs[index % LABS],
            owner=students[index % STUDENTS],
            status=LabInstance.Status.STOPPED,
            namespace=f"bench-{index}",
        )
        InstanceMachine.objects.bulk_create(
            InstanceMachine(
                instance=instance, name=f"vm{m}", image_reference="a/cirros:1", cores=1, memory_mib=128,
                username="cirros", password="x", has_vnc=True, has_serial_console=True, order=m,
            )
            for m in range(2)
        )  # fmt: skip
    return {"staff": str(AccessToken.for_user(staff)), "student": str(AccessToken.for_user(students[0]))}


async def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the app server exited with {server.returncode}")
            try:
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the app server did not come up")


async def drive(base: str, path: str, token: str, count: int, concurrency: int) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) for `count` GETs with at most `concurrency` in flight."""
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            async with session.get(f"{base}{path}", headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for _ in range(min(20, count)):  # warm-up: connections, caches, the first imports
            async with session.get(f"{base}{path}", headers=headers) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return count / elapsed, latencies


ENDPOINTS = (
    (f"GET /api/labs/ ({LABS} labs, 1 page of 50)", "/api/labs/", "staff"),
    (f"GET /api/instances/ (staff: {INSTANCES}, page of 50)", "/api/instances/", "staff"),
    (f"GET /api/instances/ (student: {INSTANCES // STUDENTS} own)", "/api/instances/", "student"),
)


async def measure_all(base: str, server: subprocess.Popen, tokens: dict[str, str], args) -> list[tuple]:
    await wait_until_up(base, server)
    rows = []
    for label, path, role in ENDPOINTS:
        cpu_before = cpu_seconds(server.pid)
        rate, latencies = await drive(base, path, tokens[role], args.requests, args.concurrency)
        # Includes the warm-up requests `drive` makes first.
        cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / (args.requests + min(20, args.requests))
        p95 = statistics.quantiles(latencies, n=20)[-1]
        rows.append((label, rate, statistics.median(latencies), p95, cpu_ms))
    return rows


def profile(path: str, token: str) -> None:
    from django.test import Client
    from pyinstrument import Profiler

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    for _ in range(20):
        assert client.get(path).status_code == 200
    profiler = Profiler(interval=0.0005)
    with profiler:
        for _ in range(100):
            client.get(path)
    print(profiler.output_text(unicode=True, color=False, flat=True, time="percent_of_total"))


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        env = {
            "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
            "DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
            "LABORCHESTRATOR_VAR_DIR": tmp,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
        }
        tokens = prepare_database(env)
        if args.profile:
            profile(args.profile, tokens["staff"])
            return
        port = free_port()
        command = [sys.executable, "-m", "laborchestrator.serve", "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            rows = asyncio.run(measure_all(f"http://127.0.0.1:{port}", server, tokens, args))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        f"uvicorn, {'SQLite' if not args.database_url else args.database_url.split(':')[0]}, "
        f"{args.requests} requests per endpoint, concurrency {args.concurrency}"
    )
    print(
        f"{'endpoint':<48} {'req/s':>8} {'median ms':>10} {'p95 ms':>8} {'CPU ms/req':>11} {'req/CPU-s':>10}"
    )
    for label, rate, median, p95, cpu_ms in rows:
        print(f"{label:<48} {rate:>8.1f} {median:>10.1f} {p95:>8.1f} {cpu_ms:>11.2f} {1000 / cpu_ms:>10.0f}")


if __name__ == "__main__":
    main()
