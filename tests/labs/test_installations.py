"""Several installations on one cluster: each labels its objects with its own id and touches only
those (reconcile, adoption at start). The id comes from INSTALLATION_ID or is generated once and kept
in the database, so every replica and every restart uses the same one."""

from io import StringIO

import pytest
from django.core.management import call_command
from kubernetes import client

from labs import installation, lifecycle, manifests
from labs.checks import check_installation_id
from labs.models import Installation, LabInstance
from tests.labs.conftest import namespace_exists, wait_for, wait_until_running

Status = LabInstance.Status


def create_namespace(admin_core, name: str, labels: dict[str, str]) -> None:
    admin_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))


@pytest.mark.django_db
def test_a_fresh_installation_gets_a_generated_id_that_is_kept(settings):
    settings.INSTALLATION_ID = ""
    assert not Installation.objects.exists()

    first = installation.installation_id()

    assert first == installation.installation_id()  # the same on every call, in every process
    assert Installation.objects.get().uid == first
    assert manifests.label_value(first) == first and len(first) >= 12


@pytest.mark.django_db
def test_the_setting_overrides_the_generated_id(settings):
    settings.INSTALLATION_ID = "staging"
    assert installation.installation_id() == "staging"
    assert not Installation.objects.exists()


@pytest.mark.parametrize("value", ["-bad", "a" * 64, "has space", "ünï"])
def test_a_malformed_installation_id_is_refused_at_start_up(settings, value):
    settings.INSTALLATION_ID = value
    (error,) = check_installation_id(None)
    assert error.id == "labs.E007"
    assert repr(value) in error.msg


def test_a_good_installation_id_passes_the_check(settings):
    settings.INSTALLATION_ID = "prod-eu_1.a"
    assert check_installation_id(None) == []


@pytest.mark.django_db
def test_the_command_shows_the_installation_id(settings):
    settings.INSTALLATION_ID = ""
    out = StringIO()
    call_command("installation_id", stdout=out)
    assert out.getvalue().strip() == Installation.objects.get().uid


@pytest.mark.django_db
def test_every_object_of_an_instance_carries_the_installation_label(
    app_cluster, admin_core, make_lab, student, settings
):
    settings.INSTALLATION_ID = "ours"
    instance = lifecycle.instance_start(user=student, lab=make_lab())
    wait_until_running(instance)
    api = app_cluster.api_client("admin")
    namespace = instance.namespace

    objects = [
        admin_core.read_namespace(namespace),
        *client.RbacAuthorizationV1Api(api).list_namespaced_role_binding(namespace).items,
        *client.NetworkingV1Api(api).list_namespaced_network_policy(namespace).items,
        *admin_core.list_namespaced_resource_quota(namespace).items,
        *admin_core.list_namespaced_secret(namespace).items,
    ]
    vmis = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kubevirt.io", "v1", namespace, "virtualmachineinstances"
    )["items"]

    assert len(objects) == 5 and len(vmis) == 1
    assert {o.metadata.labels[manifests.INSTALLATION_LABEL] for o in objects} == {"ours"}
    assert vmis[0]["metadata"]["labels"][manifests.INSTALLATION_LABEL] == "ours"
    lifecycle.instance_stop(instance=instance)  # the suite's installation would not remove it


@pytest.mark.django_db
def test_reconcile_deletes_only_its_own_orphans(app_cluster, admin_core, make_lab, student, settings):
    settings.INSTALLATION_ID = "ours"
    managed = {manifests.MANAGED_BY_LABEL: manifests.MANAGED_BY}
    create_namespace(admin_core, "ours-orphan-1", {**managed, manifests.INSTALLATION_LABEL: "ours"})
    create_namespace(admin_core, "theirs-live-1", {**managed, manifests.INSTALLATION_LABEL: "theirs"})
    create_namespace(admin_core, "before-labels-1", managed)  # made by a version without the label
    out = StringIO()

    call_command("reconcile", stdout=out, stderr=out)

    assert "Deleted orphan namespace ours-orphan-1" in out.getvalue()
    assert "before-labels-1" in out.getvalue()  # reported for the operator, not deleted
    wait_for(lambda: not namespace_exists(admin_core, "ours-orphan-1"))
    assert namespace_exists(admin_core, "theirs-live-1")
    assert namespace_exists(admin_core, "before-labels-1")
    for name in ("theirs-live-1", "before-labels-1"):
        admin_core.delete_namespace(name)


@pytest.mark.django_db
def test_a_start_never_adopts_another_installations_namespace(
    app_cluster, admin_core, make_lab, student, settings
):
    settings.INSTALLATION_ID = "ours"
    lab = make_lab()
    # The other installation's instance with the same id and the same lab prefix: the next id here is
    # the current highest + 1 (PostgreSQL) or that again once freed (SQLite), so both are taken.
    probe = LabInstance.objects.create(lab=lab, owner=student, namespace=f"probe-{lab.namespace_prefix}")
    next_ids = (probe.pk, probe.pk + 1)
    probe.delete()
    theirs = {}
    for candidate in next_ids:
        name = manifests.namespace_name(prefix=lab.namespace_prefix, instance_id=candidate)
        labels = manifests.instance_labels(
            installation_id="theirs", instance_id=candidate, lab_slug=lab.slug, owner_id=student.pk
        )
        create_namespace(admin_core, name, labels)
        theirs[name] = admin_core.read_namespace(name).metadata.uid

    with pytest.raises(lifecycle.ClusterError, match="another Lab Orchestrator installation"):
        lifecycle.instance_start(user=student, lab=lab)

    instance = LabInstance.objects.get(lab=lab)
    assert instance.namespace in theirs
    assert instance.status == Status.FAILED
    assert "belongs to another Lab Orchestrator installation" in instance.last_error
    for name, uid in theirs.items():  # untouched: not deleted by the rollback, not filled
        namespace = admin_core.read_namespace(name)
        assert namespace.metadata.uid == uid and namespace.status.phase == "Active"
        assert admin_core.list_namespaced_secret(name).items == []
        admin_core.delete_namespace(name)
