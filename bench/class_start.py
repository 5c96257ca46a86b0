"""A class of students starting a lab at once, then keeping its page open: start and status latency,
cluster API calls per second, database queries per status read, and the web process's CPU.

    createdb -h 127.0.0.1 -U postgres class_bench     # once; the bench empties it (flush) each run
    .venv/bin/python bench/class_start.py [--students 200] [--machines 2] [--start-window 60]
        [--poll-minutes 5] [--latency-ms 20] [--database-url postgres://postgres@127.0.0.1:5432/class_bench]

Set-up as in production: the app served by `python -m laborchestrator.serve` (uvicorn, one process),
the status watcher (`manage.py watch_cluster`) and the housekeeping loops (`expire`, `reconcile`,
every 60 s) as processes of their own, on PostgreSQL; the local cluster with the `none` runtime and
`--latency-ms` added to every API call. Each simulated student has its own HTTP client (aiohttp
session, its own connection), signs in with a JWT, starts the lab at a random moment of the start
window, then polls `GET /api/instances/{id}/` the way the instance page does (portal/static/portal/
instance.js: every 2 s while something changes, every 15 s when steady) until `--poll-minutes` after
its start.

Reports start p50/p95, GET p50/p95 (all, and in the steady part), cluster API calls per second in the
steady part (from the local cluster's own call log: every request any process made), database
queries per GET (one GET replayed in-process under CaptureQueriesContext), and the web process's CPU
(user+system from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BUSY_POLL_SECONDS, STEADY_POLL_SECONDS = 2.0, 15.0  # portal/static/portal/instance.js
BUSY = {"requested", "starting", "stopping"}
PROBE_SECONDS = 5.0  # LABS_WATCH_HEARTBEAT_SECONDS's default
FINISHED = {"stopped", "failed", "expired"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--machines", type=int, default=2, help="machines per lab")
    parser.add_argument("--start-window", type=float, default=60.0, help="seconds over which students start")
    parser.add_argument("--poll-minutes", type=float, default=5.0, help="how long each page stays open")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every cluster API call")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/class_bench",
        help="an existing PostgreSQL database; EMPTIED at the start",
    )
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=20)
    return statistics.median(values), cuts[-1]


def poll_interval(data: dict) -> float:
    """The instance page's next poll, as instance.js decides it."""
    status = data.get("status")
    if status in BUSY or data.get("pending_action"):
        return BUSY_POLL_SECONDS
    machines = data.get("machines") or []
    if status == "running" and any(m.get("phase") != "Running" or m.get("ready") is False for m in machines):
        return BUSY_POLL_SECONDS
    return STEADY_POLL_SECONDS * 4 if status in FINISHED else STEADY_POLL_SECONDS


@dataclass
class Results:
    starts: list[tuple[float, int]] = field(default_factory=list)  # (seconds, HTTP status)
    gets: list[tuple[float, float, int]] = field(default_factory=list)  # (when, seconds, HTTP status)
    running_after: list[float] = field(default_factory=list)  # start request -> page shows running
    statuses: collections.Counter = field(default_factory=collections.Counter)  # final status per student
    instances: list[tuple[int, str]] = field(default_factory=list)  # (id, its owner's token)


async def student(
    base: str, token: str, lab: str, delay: float, page_seconds: float, results: Results
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:  # one client, one connection each
        await asyncio.sleep(delay)
        began = time.perf_counter()
        async with session.post(f"{base}/api/instances/", json={"lab": lab}) as response:
            data = await response.json()
            results.starts.append((time.perf_counter() - began, response.status))
        if response.status != 201:
            results.statuses[f"start HTTP {response.status}"] += 1
            return
        results.instances.append((data["id"], token))
        url = f"{base}/api/instances/{data['id']}/"
        running_seen = False
        while time.perf_counter() - began < page_seconds:
            await asyncio.sleep(poll_interval(data))
            sent = time.perf_counter()
            async with session.get(url) as response:
                fresh = await response.json()
            results.gets.append((sent, time.perf_counter() - sent, response.status))
            if response.status == 200:
                data = fresh
            if (
                not running_seen
                and data.get("status") == "running"
                and poll_interval(data) == STEADY_POLL_SECONDS
            ):
                running_seen = True
                results.running_after.append(time.perf_counter() - began)
        results.statuses[data.get("status", "?")] += 1


def prepare_database(env: dict[str, str], students: int, machines: int) -> tuple[list[str], str]:
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from labs.models import Lab, LabMachine, VMImage

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    users = get_user_model().objects
    tokens = [
        str(AccessToken.for_user(users.create_user(f"student-{i}", password=secrets.token_hex(8))))
        for i in range(students)
    ]
    image = VMImage.objects.create(
        name="Cirros", container_disk_image="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="cirros", min_memory_mib=64,
    )  # fmt: skip
    lab = Lab.objects.create(name="Class lab", slug="class-lab", namespace_prefix="class", published=True)
    for index in range(machines):
        LabMachine.objects.create(lab=lab, name=f"vm{index}", image=image, memory_mib=64, order=index)
    return tokens, lab.slug


def queries_per_get(instance_id: int, token: str) -> int:
    """One status read replayed in this process, counting its queries."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/api/instances/{instance_id}/")
    assert response.status_code == 200, response.content
    return len(captured)


async def wait_until_up(base: str, server: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"the app server exited with {server.returncode}")
            try:
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the app server did not come up")


async def run_class(base, server, local, tokens, lab, args) -> dict:
    await wait_until_up(base, server)
    results = Results()
    page_seconds = args.poll_minutes * 60
    rng = random.Random(20)  # start moments, not secrets
    delays = [rng.uniform(0, args.start_window) for _ in tokens]
    began = time.perf_counter()
    cpu_began = cpu_seconds(server.pid)
    tasks = [
        asyncio.create_task(student(base, token, lab, delay, page_seconds, results))
        for token, delay in zip(tokens, delays, strict=True)
    ]
    # The steady part: from when every start is answered and every page shows its lab running
    # (or a minute after the window at the latest) to when the first page closes.
    deadline = began + args.start_window + 60
    while len(results.running_after) + sum(1 for _, s in results.starts if s != 201) < len(tokens):
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.5)
    steady_began = time.perf_counter()
    await asyncio.to_thread(local.faults.reset_calls)
    cpu_steady_began = cpu_seconds(server.pid)
    steady_until = began + min(delays) + page_seconds
    await asyncio.sleep(max(0.0, steady_until - time.perf_counter()))
    steady_seconds = time.perf_counter() - steady_began
    calls = await asyncio.to_thread(local.faults.calls)
    cpu_steady = cpu_seconds(server.pid) - cpu_steady_began
    await asyncio.gather(*tasks)
    total_seconds = time.perf_counter() - began
    return {
        "results": results,
        "steady_seconds": steady_seconds,
        "steady_began": steady_began,
        "steady_until": steady_until,
        "calls": calls,
        "cpu_steady": cpu_steady,
        "cpu_total": cpu_seconds(server.pid) - cpu_began,
        "total_seconds": total_seconds,
    }


def start_processes(env: dict[str, str], port: int, log_dir: Path) -> list[subprocess.Popen]:
    python = sys.executable
    commands = {
        "web": [python, "-m", "laborchestrator.serve", "--host", "127.0.0.1", "--port", str(port)],
        "watcher": [python, "manage.py", "watch_cluster"],
        "expire": [python, "manage.py", "expire", "--loop", "60"],
        "reconcile": [python, "manage.py", "reconcile", "--loop", "60"],
    }
    processes = []
    for name, command in commands.items():
        with open(log_dir / f"{name}.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
                )
            )
    return processes


def report(outcome: dict, args, queries: int) -> None:
    results: Results = outcome["results"]
    start_ok = [seconds for seconds, status in results.starts if status == 201]
    start_p50, start_p95 = quantiles(start_ok)
    get_all = [seconds for _, seconds, status in results.gets if status == 200]
    get_steady = [
        seconds
        for sent, seconds, status in results.gets
        if status == 200 and outcome["steady_began"] <= sent <= outcome["steady_until"]
    ]
    failed_gets = sum(1 for _, _, status in results.gets if status != 200)
    running_p50, running_p95 = quantiles(results.running_after)
    calls = outcome["calls"]
    steady = outcome["steady_seconds"]
    by_kind = collections.Counter(f"{c.get('verb')} {c.get('resource')}" for c in calls)
    print(
        f"{args.students} students, {args.machines}-machine lab, starts over {args.start_window:g} s, "
        f"pages open {args.poll_minutes:g} min, cluster latency {args.latency_ms:g} ms; uvicorn + PostgreSQL"
    )
    print(f"starts: {len(start_ok)} of {len(results.starts)} answered 201; p50 {start_p50 * 1000:.0f} ms, "
          f"p95 {start_p95 * 1000:.0f} ms")  # fmt: skip
    print(f"start -> page shows running: p50 {running_p50:.1f} s, p95 {running_p95:.1f} s")
    all_p50, all_p95 = quantiles(get_all)
    steady_p50, steady_p95 = quantiles(get_steady)
    print(f"GET /api/instances/{{id}}/: {len(get_all)} answered 200 ({failed_gets} not); "
          f"p50 {all_p50 * 1000:.1f} ms, p95 {all_p95 * 1000:.1f} ms; "
          f"steady part p50 {steady_p50 * 1000:.1f} ms, p95 {steady_p95 * 1000:.1f} ms")  # fmt: skip
    rate = len(get_steady) / steady
    print(f"steady part: {steady:.0f} s, {rate:.1f} GETs/s from {args.students} open pages")
    kinds = ", ".join(f"{n} {k}" for k, n in by_kind.most_common())
    print(f"cluster API calls in the steady part: {len(calls)} = {len(calls) / steady:.2f}/s ({kinds}); "
          f"plus the watcher's GET /version probe every {PROBE_SECONDS:g} s "
          "(the call log counts resource requests only)")  # fmt: skip
    print(f"database queries per GET: {queries}")
    print(f"web process CPU: {outcome['cpu_steady'] / steady * 100:.1f}% of a core in the steady part, "
          f"{outcome['cpu_total']:.1f} s over the whole run ({outcome['total_seconds']:.0f} s)")  # fmt: skip
    print(f"final status per page: {dict(results.statuses)}")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="class-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        env = {
            "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
            "DATABASE_URL": args.database_url,
            "LABORCHESTRATOR_VAR_DIR": tmp_dir,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
        tokens, lab = prepare_database(env, args.students, args.machines)
        from django.conf import settings

        from localcluster.harness import start_local_cluster

        with start_local_cluster(tmp / "cluster", runtime="none") as local:
            local.faults.node(
                memory=f"{args.students * args.machines}Gi", cpu=str(args.students * args.machines)
            )
            local.faults.latency(args.latency_ms)
            env |= {"KUBECONFIG": str(local.kubeconfig), "KUBE_CONTEXT": "laborchestrator"}
            port = free_port()
            processes = start_processes(env, port, tmp)
            try:
                outcome = asyncio.run(
                    run_class(f"http://127.0.0.1:{port}", processes[0], local, tokens, lab, args)
                )
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=15)
            settings.KUBECONFIG = str(local.kubeconfig)
            results: Results = outcome["results"]
            queries = queries_per_get(*results.instances[0]) if results.instances else -1
            report(outcome, args, queries)
            for name in ("web", "watcher"):
                errors = [line for line in (tmp / f"{name}.log").read_text().splitlines() if "ERROR" in line]
                if errors:
                    print(f"{name} log: {len(errors)} ERROR lines, first: {errors[0][:200]}")


if __name__ == "__main__":
    main()
