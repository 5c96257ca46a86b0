"""One Lab Orchestrator installation as its own process, for tests that put two on one cluster.

    python -m tests.labs.installation_process PREFIX COMMAND...

Runs with the database, kubeconfig and settings of its environment (the test gives each installation
its own SQLite file and no INSTALLATION_ID, so each generates its own id). It migrates, makes a student
and a one-machine lab with the namespace prefix PREFIX if missing, then runs the commands through the
application's own services and prints one line per command, `RESULT ` and a JSON object:

    id         this installation's id
    start      start the lab (a refused start is reported, not raised)
    wait       refresh every active instance until none is starting any more
    reconcile  one reconcile pass
    stop-all   stop every active instance and wait until each is stopped
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "laborchestrator.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from labs import lifecycle  # noqa: E402
from labs.exceptions import ClusterError  # noqa: E402
from labs.installation import installation_id  # noqa: E402
from labs.models import Lab, LabInstance, LabMachine, VMImage  # noqa: E402

Status = LabInstance.Status
TIMEOUT_SECONDS = 60
# Marks the result lines among the application's own logging on stdout.
RESULT_PREFIX = "RESULT "


def setup(prefix: str) -> tuple[Any, Lab]:
    call_command("migrate", verbosity=0)
    student, _ = get_user_model().objects.get_or_create(username="student")
    image, _ = VMImage.objects.get_or_create(
        name="Cirros",
        defaults={
            "container_disk_image": "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
            "default_username": "cirros",
        },
    )
    lab, created = Lab.objects.get_or_create(
        slug="twin",
        defaults={"name": "Twin", "namespace_prefix": prefix, "published": True, "instances_per_user": 5},
    )
    if created:
        LabMachine.objects.create(lab=lab, name="vm0", image=image, cores=1, memory_mib=256)
    return student, lab


def describe(instance: LabInstance) -> dict[str, Any]:
    return {
        "id": instance.pk,
        "namespace": instance.namespace,
        "status": instance.status,
        "last_error": instance.last_error,
    }


def wait(predicate) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.1)


def run(command: str, student: Any, lab: Lab) -> dict[str, Any]:
    if command == "id":
        return {"installation": installation_id()}
    if command == "start":
        try:
            return describe(lifecycle.instance_start(user=student, lab=lab))
        except ClusterError:
            return describe(LabInstance.objects.latest("pk"))
    if command == "wait":
        for instance in LabInstance.objects.filter(status=Status.STARTING):
            wait(lambda i=instance: lifecycle.instance_refresh(instance=i).status != Status.STARTING)
        return {"instances": [describe(i) for i in LabInstance.objects.order_by("pk")]}
    if command == "reconcile":
        report = lifecycle.reconcile()
        return {"orphans_deleted": report.orphans_deleted, "unlabelled": report.unlabelled}
    if command == "stop-all":
        for instance in LabInstance.objects.active():
            lifecycle.instance_stop(instance=instance)
            wait(lambda i=instance: lifecycle.instance_refresh(instance=i).status == Status.STOPPED)
        return {"instances": [describe(i) for i in LabInstance.objects.order_by("pk")]}
    raise SystemExit(f"unknown command {command!r}")


def main(argv: list[str]) -> None:
    prefix, commands = argv[0], argv[1:]
    student, lab = setup(prefix)
    for command in commands:
        print(RESULT_PREFIX + json.dumps({"command": command, **run(command, student, lab)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
