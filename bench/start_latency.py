"""Start latency of 1-, 5- and 10-machine labs against the local cluster, with injected API latency.

    .venv/bin/python bench/start_latency.py [--runs 7] [--latency-ms 20]

Times `labs.lifecycle.instance_start` (namespace, policy, quota, secrets and VMIs created, until
the instance is `starting`), median over the runs after one warm-up, and counts the API calls it
made. Uses a throw-away SQLite database and a local cluster with the `none` runtime.
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
SIZES = (1, 5, 10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed starts per lab size (at most 19)")
    parser.add_argument("--latency-ms", type=int, default=20, help="latency added to every API call")
    return parser.parse_args()


def setup_django(tmp: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "laborchestrator.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_lab(machines: int, image):
    from labs.models import Lab, LabMachine

    lab = Lab.objects.create(
        name=f"Bench {machines}",
        slug=f"bench-{machines}",
        namespace_prefix=f"bench{machines}",
        published=True,
        instances_per_user=20,
    )
    for index in range(machines):
        LabMachine.objects.create(
            lab=lab, name=f"vm{index}", image=image, cores=1, memory_mib=128, order=index
        )
    return lab


def measure(local, user, lab, runs: int) -> tuple[float, int]:
    from labs import lifecycle

    times, calls = [], []
    for run in range(runs + 1):
        local.faults.reset_calls()
        started = time.perf_counter()
        instance = lifecycle.instance_start(user=user, lab=lab)
        elapsed = time.perf_counter() - started
        made = len(local.faults.calls())
        lifecycle.instance_stop(instance=instance)
        if run:  # the first run opens the connections and is not counted
            times.append(elapsed)
            calls.append(made)
    return statistics.median(times), round(statistics.median(calls))


def main() -> None:
    args = parse_args()
    # The database lives in memory where possible: fsync noise on a shared disk would swamp the
    # cluster round trips this measures.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp_dir:
        tmp = Path(tmp_dir)
        setup_django(tmp)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from labs import cluster
        from labs.models import VMImage
        from localcluster.pytest_plugin import start_local_cluster

        with start_local_cluster(tmp / "cluster", runtime="none") as local:
            settings.KUBECONFIG = str(local.kubeconfig)
            settings.KUBE_CONTEXT = "laborchestrator"
            cluster.reset_client()
            local.faults.latency(args.latency_ms)
            user = get_user_model().objects.create_user(username="bench", password="x", is_staff=True)
            image = VMImage.objects.create(
                name="Cirros",
                container_disk_image="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
                default_username="cirros",
            )
            print(f"instance_start, {args.latency_ms} ms API latency, median of {args.runs} runs")
            print(f"{'machines':>8}  {'median ms':>9}  {'API calls':>9}  {'vs 1 machine':>12}")
            baseline = None
            for size in SIZES:
                median, calls = measure(local, user, make_lab(size, image), args.runs)
                baseline = baseline or median
                print(f"{size:>8}  {median * 1000:>9.0f}  {calls:>9}  {median / baseline:>11.2f}x")


if __name__ == "__main__":
    main()
