"""Click → result of a step check on the embedded cluster: median and p95.

    .venv/bin/python bench/check_latency.py [--runs 30] [--runtime qemu|none|container|both|all]

Times what the Check button's request does (POST /api/tutorials/<slug>/steps/<id>/check/ through
Django and DRF in this process, as the student's session): the run recorded, the portforward
websocket to the local cluster over HTTPS, SSH login with the instance's key, the script, the result
recorded and the progress computed. `qemu`: a real VM booted from the demo image (dropbear in the
guest, the port-forward from a network namespace on its lab segment); `none`: the simulated guest
(an SSH server in the local cluster process, the command in a sandbox); `container`: a container
machine (the busybox tools image, a real runc container), the check through `pods/exec` instead of
port-forward and SSH (needs root, runc, umoci). One warm-up run is not
counted. A throw-away SQLite database in /dev/shm; the throttle is off.
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
IMAGES = Path(__file__).resolve().parent.parent / "var" / "localcluster" / "images"
SCRIPT = 'test -d /tmp || { echo "FAIL: no /tmp"; exit 1; }'
BOOT_SECONDS = 240


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed checks per runtime")
    parser.add_argument("--runtime", choices=("qemu", "none", "container", "both", "all"), default="both")
    return parser.parse_args()


def setup_django(tmp: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "laborchestrator.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["API_THROTTLE_STEP_CHECK"] = ""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_lab(runtime: str):
    from labs.models import Lab, LabMachine
    from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

    lab = Lab.objects.create(
        name=f"Bench {runtime}", slug=f"bench-{runtime}", namespace_prefix=f"bc{runtime}", published=True
    )
    if runtime == "container":
        from localcluster.containers.toolsimage import TOOLS_REFERENCE

        LabMachine.objects.create(
            lab=lab, name="vm0", kind="container", container_image=TOOLS_REFERENCE, memory_mib=64
        )
    else:
        LabMachine.objects.create(lab=lab, name="vm0", image=vm_image(runtime), memory_mib=128)
    tutorial = Tutorial.objects.create(title=f"Bench {runtime}", slug=f"bench-{runtime}", published=True)
    tutorial.labs.add(lab)
    step = Step.objects.create(
        page=TutorialPage.objects.create(tutorial=tutorial, title="P"), text_markdown="s"
    )
    StepCheck.objects.create(step=step, machine="vm0", script=SCRIPT)
    return lab, tutorial, step


def vm_image(runtime: str):
    from labs.models import VMImage
    from localcluster.demoimage import DEMO_REFERENCE

    return VMImage.objects.create(
        name=f"Image {runtime}",
        container_disk_image=DEMO_REFERENCE
        if runtime == "qemu"
        else "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="lab",
        has_ssh_server=True,
        min_memory_mib=96,
    )


def measure(runtime: str, runs: int, tmp: Path, user) -> list[float]:
    from django.conf import settings
    from rest_framework.test import APIClient

    from labs import cluster, lifecycle
    from labs.models import LabInstance
    from localcluster.harness import start_local_cluster

    images = None
    extra: list[str] = []
    if runtime == "qemu":
        from localcluster.demoimage import build_demo_image

        images = IMAGES
        build_demo_image(images, log=lambda _msg: None)
    if runtime == "container":
        from localcluster.containers import toolsimage

        toolsimage.build(tmp / "container-images", tag="1")
        extra = ["--container-images", str(tmp / "container-images")]
    cluster_runtime = "none" if runtime == "container" else runtime
    with start_local_cluster(
        tmp / f"cluster-{runtime}", runtime=cluster_runtime, images=images, extra_args=extra
    ) as local:
        settings.KUBECONFIG = str(local.kubeconfig)
        settings.KUBE_CONTEXT = "laborchestrator"
        cluster.reset_client()
        lab, tutorial, step = make_lab(runtime)
        instance = lifecycle.instance_start(user=user, lab=lab)
        deadline = time.monotonic() + BOOT_SECONDS
        while lifecycle.instance_refresh(instance=instance).status != LabInstance.Status.RUNNING:
            if time.monotonic() > deadline:
                raise SystemExit(f"{runtime}: the lab did not start: {instance.last_error}")
            time.sleep(0.5)
        client = APIClient()
        client.force_authenticate(user)
        url = f"/api/tutorials/{tutorial.slug}/steps/{step.pk}/check/"
        times: list[float] = []
        deadline = time.monotonic() + BOOT_SECONDS
        while True:  # the guest's SSH server comes up a few seconds after QEMU does
            result = client.post(url, {"instance": instance.pk}, format="json").json()["run"]["result"]
            if result == "passed":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{runtime}: the check never passed: {result}")
            time.sleep(1)
        for _ in range(runs):
            started = time.perf_counter()
            response = client.post(url, {"instance": instance.pk}, format="json")
            times.append(time.perf_counter() - started)
            assert response.json()["run"]["result"] == "passed", response.json()
        lifecycle.instance_stop(instance=instance)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def main() -> None:
    args = parse_args()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    runtimes = {"both": ("qemu", "none"), "all": ("qemu", "none", "container")}.get(
        args.runtime, (args.runtime,)
    )
    with tempfile.TemporaryDirectory(dir=shm) as tmp_dir:
        tmp = Path(tmp_dir)
        setup_django(tmp)
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="bench", password="x")
        print(f"check click -> result, {args.runs} runs after a warm-up")
        print(f"{'machine':<34}  {'median ms':>9}  {'p95 ms':>7}  {'goal':>6}")
        for runtime in runtimes:
            times = measure(runtime, args.runs, tmp, user)
            label = {
                "qemu": "VM (qemu, demo image, dropbear)",
                "none": "VM (none runtime, simulated guest)",
                "container": "container (runc, pods/exec)",
            }[runtime]
            goal = "500" if runtime == "container" else "1500"
            median = statistics.median(times) * 1000
            print(f"{label:<34}  {median:>9.0f}  {p95(times) * 1000:>7.0f}  {goal:>6}")


if __name__ == "__main__":
    main()
