"""Click Start → usable terminal, from the lab's pool of ready instances vs a cold start.

    .venv/bin/python bench/pool_start.py [--runs 10] [--latency-ms 20]

Times, per run, as the student's browser does it: `POST /api/instances/` (the catalog's Start
button; Django and DRF in this process, the student's session), then `GET` of the instance until
it is `running` (polled every 50 ms; the instance page polls every BUSY_POLL_MS), then the serial
console websocket of its first machine opened over HTTPS to the local cluster and read until the
machine's first output. The console relay in the app server adds the same small cost to both paths
(see bench/relay_throughput.py). Pool: the lab keeps one ready instance, refilled (untimed) before
each run as the housekeeping loop does; cold: none. A new student per run; median and max after
one warm-up run. The local cluster runs the `none` runtime (simulated machines), with the API
latency given; a throw-away SQLite database in /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
POLL_SECONDS = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed starts per path")
    parser.add_argument("--latency-ms", type=int, default=20, help="latency added to every API call")
    return parser.parse_args()


def setup_django(tmp: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "laborchestrator.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["API_THROTTLE_INSTANCE_START"] = ""
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_lab(slug: str, ready: int):
    from labs.models import Lab, LabMachine, VMImage

    image, _ = VMImage.objects.get_or_create(
        name="Cirros",
        defaults={
            "container_disk_image": "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
            "default_username": "cirros",
        },
    )
    lab = Lab.objects.create(
        name=slug, slug=slug, namespace_prefix=slug, published=True, ready_instances=ready
    )
    LabMachine.objects.create(lab=lab, name="vm0", image=image, cores=1, memory_mib=128)
    return lab


def fill_pool(lab) -> None:
    """What the housekeeping loop does between two students: refill, refresh until running."""
    from labs import lifecycle
    from labs.models import LabInstance

    lifecycle.pool_refill()
    deadline = time.monotonic() + 60
    while not LabInstance.objects.filter(lab=lab, pooled=True, status=LabInstance.Status.RUNNING).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the pool did not fill within 60 s")
        lifecycle.reconcile()
        time.sleep(POLL_SECONDS)


def first_console_output(namespace: str, machine: str) -> bytes:
    from websockets.sync.client import connect

    from labs import cluster

    target = cluster.subresource_websocket_target(namespace=namespace, name=machine, kind="console")
    with connect(
        target.url,
        ssl=target.ssl,
        server_hostname=target.server_hostname,
        additional_headers=target.headers,
        subprotocols=["plain.kubevirt.io"],
        proxy=None,
        open_timeout=30,
    ) as console:
        return console.recv(timeout=30, decode=False)


def click_start_to_terminal(browser, lab) -> tuple[float, str]:
    started = time.perf_counter()
    answer = browser.post("/api/instances/", {"lab": lab.slug}, content_type="application/json")
    if answer.status_code != 201:
        raise SystemExit(f"start refused: {answer.status_code} {answer.content[:300]!r}")
    url = f"/api/instances/{answer.json()['id']}/"
    detail = answer.json()
    while detail["status"] != "running":
        if detail["status"] in ("failed", "stopped", "expired"):
            raise SystemExit(f"instance {detail['status']}: {detail}")
        time.sleep(POLL_SECONDS)
        detail = browser.get(url).json()
    from labs.models import LabInstance

    instance = LabInstance.objects.get(pk=detail["id"])
    if not first_console_output(instance.namespace, "vm0"):
        raise SystemExit("the console said nothing")
    return time.perf_counter() - started, "pool" if instance.handed_over_at else "cold"


def measure(lab, runs: int, pooled: bool) -> list[float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from labs import lifecycle
    from labs.models import LabInstance

    times = []
    for run in range(runs + 1):
        if pooled:
            fill_pool(lab)
        student = get_user_model().objects.create_user(username=f"{lab.slug}-{run}")
        browser = Client()
        browser.force_login(student)
        elapsed, path = click_start_to_terminal(browser, lab)
        expected = "pool" if pooled else "cold"
        if path != expected:
            raise SystemExit(f"run {run} of the {expected} path went through the {path} path")
        for instance in LabInstance.objects.filter(owner=student):
            lifecycle.instance_stop(instance=instance)
        if run:  # the first run opens the connections and is not counted
            times.append(elapsed)
    return times


def main() -> None:
    args = parse_args()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp_dir:
        tmp = Path(tmp_dir)
        setup_django(tmp)
        from django.conf import settings

        from labs import cluster
        from localcluster.pytest_plugin import start_local_cluster

        with start_local_cluster(tmp / "cluster", runtime="none") as local:
            settings.KUBECONFIG = str(local.kubeconfig)
            settings.KUBE_CONTEXT = "laborchestrator"
            cluster.reset_client()
            local.faults.latency(args.latency_ms)
            print(f"click Start -> first console output, {args.latency_ms} ms API latency, {args.runs} runs")
            print(f"{'path':>5}  {'median ms':>9}  {'max ms':>7}")
            for name, ready in (("cold", 0), ("pool", 1)):
                times = measure(make_lab(f"bench{name}", ready), args.runs, pooled=bool(ready))
                print(f"{name:>5}  {statistics.median(times) * 1000:>9.0f}  {max(times) * 1000:>7.0f}")


if __name__ == "__main__":
    main()
