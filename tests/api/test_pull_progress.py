"""Pull progress reaches the student page's API and the admin: the embedded cluster's `Ready=False`
`Pulling` condition (localcluster/cluster.py `_pull_progress`), as the status watch records it.
Students read a percentage in plain words; staff get the cluster's message with the image."""

from __future__ import annotations

import pytest
from django.test import Client

from labs.cluster import NamespaceInfo
from labs.lifecycle import instance_observe
from labs.machine_reasons import pull_progress
from labs.models import LabInstance

pytestmark = pytest.mark.django_db
REFERENCE = "127.0.0.1:5055/laborchestrator/demo:1"
MESSAGE = f'pulling 35 % of image "{REFERENCE}" (12.3 of 35.1 MB)'


def pulling_vmi(name: str, message: str = MESSAGE, phase: str = "Scheduling") -> dict:
    return {
        "metadata": {"name": name},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Pulling", "message": message}],
        },
    }


def test_the_percentage_is_read_only_from_the_pulling_condition():
    assert pull_progress(pulling_vmi("a")["status"]).percent == 35
    assert pull_progress(pulling_vmi("a", phase="Running")["status"]) is None
    assert (
        pull_progress({"phase": "Scheduling", "conditions": [{"type": "Ready", "status": "False"}]}) is None
    )
    assert pull_progress(pulling_vmi("a", message="pulling lots")["status"]) is None


def test_students_see_the_percentage_and_staff_the_image(
    app_cluster, make_lab, student, instructor, client_for
):
    lab = make_lab()
    student_client = client_for(student)
    started = student_client.post("/api/instances/", {"lab": lab.slug}, format="json")
    assert started.status_code == 201, started.content
    instance = LabInstance.objects.get(pk=started.json()["id"])
    names = list(instance.machines.values_list("name", flat=True))

    instance_observe(
        instance=instance,
        vmis=[pulling_vmi(name) for name in names],
        namespace=NamespaceInfo(instance.namespace, {}, "Active"),
    )

    url = f"/api/instances/{instance.pk}/"
    machine = student_client.get(url).json()["machines"][0]
    assert machine["pull_progress"] == 35
    assert machine["message"] == "Downloading its disk image: 35 %."
    assert "127.0.0.1" not in machine["message"]
    staff_machine = client_for(instructor).get(url).json()["machines"][0]
    assert staff_machine["message"] == MESSAGE
    admin = Client()  # the admin's instance page lists it per machine
    admin.force_login(instructor)
    page = admin.get(f"/admin/labs/labinstance/{instance.pk}/change/").content.decode()
    assert "pulling 35 %" in page

    instance.refresh_from_db()
    assert instance.status == LabInstance.Status.STARTING  # pulling is not a failure
