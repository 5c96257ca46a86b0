"""How many instances a student may run, and how much of the cluster one instance may take."""

import os
import threading
from pathlib import Path

import pytest
from django.db import connection
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labs import lifecycle, manifests
from labs.exceptions import InstanceLimitReached
from labs.models import LabInstance
from tests.labs.conftest import wait_until_running, wait_until_stopped
from tests.vncproxy.app_server import use_file_sqlite_test_database

# Concurrent starts on SQLite: a file, as in production. Django's in-memory test database shares one
# cache between connections, whose table locks fail at once instead of waiting for the writer.
use_file_sqlite_test_database(Path(os.environ.get("TMPDIR", "/tmp")) / f"labs-test-{os.getpid()}.sqlite3")

Status = LabInstance.Status


@pytest.mark.django_db
def test_a_lab_allows_its_number_of_instances_per_student(app_cluster, make_lab, student, other_student):
    lab = make_lab(instances_per_user=1)
    lifecycle.instance_start(user=student, lab=lab)

    with pytest.raises(InstanceLimitReached, match="1 instance") as raised:
        lifecycle.instance_start(user=student, lab=lab)

    assert (raised.value.scope, raised.value.limit) == ("lab", 1)
    assert LabInstance.objects.filter(owner=student).count() == 1
    # Another student is not affected.
    assert lifecycle.instance_start(user=other_student, lab=lab).status == Status.STARTING


@pytest.mark.django_db
def test_the_global_limit_counts_every_lab(app_cluster, make_lab, student, settings):
    settings.LABS_MAX_INSTANCES_PER_USER = 2
    lifecycle.instance_start(user=student, lab=make_lab())
    lifecycle.instance_start(user=student, lab=make_lab())

    with pytest.raises(InstanceLimitReached, match="across all labs") as raised:
        lifecycle.instance_start(user=student, lab=make_lab())

    assert (raised.value.scope, raised.value.limit) == ("user", 2)


@pytest.mark.django_db
def test_staff_are_exempt_from_the_global_limit_only(app_cluster, make_lab, instructor, settings):
    settings.LABS_MAX_INSTANCES_PER_USER = 1
    lab = make_lab(instances_per_user=1)
    lifecycle.instance_start(user=instructor, lab=lab)
    lifecycle.instance_start(user=instructor, lab=make_lab())

    with pytest.raises(InstanceLimitReached) as raised:
        lifecycle.instance_start(user=instructor, lab=lab)
    assert raised.value.scope == "lab"


@pytest.mark.django_db
def test_stopped_instances_free_their_place(app_cluster, make_lab, student):
    lab = make_lab(instances_per_user=1)
    first = lifecycle.instance_start(user=student, lab=lab)
    lifecycle.instance_stop(instance=first)
    wait_until_stopped(first)

    assert lifecycle.instance_start(user=student, lab=lab).status == Status.STARTING


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_starts_with_a_limit_of_one_give_one_instance(app_cluster, make_lab, student):
    lab = make_lab(instances_per_user=1)
    barrier = threading.Barrier(2)
    results = []

    def start():
        barrier.wait()
        try:
            results.append(lifecycle.instance_start(user=student, lab=lab))
        except InstanceLimitReached as error:
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(type(r).__name__ for r in results) == ["InstanceLimitReached", "LabInstance"]
    assert LabInstance.objects.filter(owner=student, lab=lab).count() == 1


@pytest.mark.django_db
def test_the_quota_refuses_a_machine_more_than_the_lab_declares(
    app_cluster, make_lab, student, local_cluster
):
    instance = lifecycle.instance_start(user=student, lab=make_lab(machines=2))
    wait_until_running(instance)
    extra = manifests.make_vmi(
        namespace=instance.namespace,
        labels={},
        machine=manifests.MachineSpec(
            name="intruder",
            image_reference="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
            cores=1,
            memory_mib=128,
            username="cirros",
            password="x",
            has_vnc=True,
            has_serial_console=True,
        ),
    )
    api = client.CustomObjectsApi(local_cluster.api_client("admin"))

    with pytest.raises(ApiException) as raised:
        api.create_namespaced_custom_object(
            "kubevirt.io", "v1", instance.namespace, "virtualmachineinstances", extra
        )

    assert raised.value.status == 403
    assert "exceeded quota" in raised.value.body


@pytest.mark.django_db
def test_limit_messages_count_in_words_not_with_parentheses(app_cluster, make_lab, student, settings):
    settings.LABS_MAX_INSTANCES_PER_USER = 2
    lab = make_lab(instances_per_user=2)
    lifecycle.instance_start(user=student, lab=lab)
    lifecycle.instance_start(user=student, lab=lab)
    with pytest.raises(InstanceLimitReached) as per_lab:
        lifecycle.instance_start(user=student, lab=lab)
    assert per_lab.value.message == (
        f"You may run 2 instances of {lab.name!r} at a time; stop one before starting another."
    )
    with pytest.raises(InstanceLimitReached) as across_labs:
        lifecycle.instance_start(user=student, lab=make_lab())
    assert (
        across_labs.value.message == "You may run 2 lab instances at a time across all labs; stop one first."
    )
