"""Model rules instructors hit while authoring labs: names the cluster accepts, uniqueness, order."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labs.models import Lab, LabInstance, LabMachine, VMImage
from labs.validators import NAMESPACE_PREFIX_MAX_LENGTH

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    return VMImage.objects.create(
        name="Debian",
        container_disk_image="quay.io/containerdisks/debian:12",
        default_username="debian",
        min_memory_mib=256,
    )


@pytest.fixture
def lab():
    return Lab.objects.create(name="Networking 101", slug="net-101", namespace_prefix="net101")


def test_namespace_prefix_plus_largest_instance_id_is_a_valid_namespace(lab):
    lab.namespace_prefix = "a" * NAMESPACE_PREFIX_MAX_LENGTH
    lab.full_clean()
    largest_id = 9_223_372_036_854_775_807  # BigAutoField's maximum
    assert len(f"{lab.namespace_prefix}-{largest_id}") <= 63


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "Net101",
        "net_101",
        "-net",
        "net-",
        "1net",
        "net.101",
        "a" * (NAMESPACE_PREFIX_MAX_LENGTH + 1),
        "nét",
    ],
)
def test_invalid_namespace_prefixes_are_rejected_with_the_rule(lab, prefix):
    lab.namespace_prefix = prefix
    with pytest.raises(ValidationError) as excinfo:
        lab.full_clean()
    messages = " ".join(excinfo.value.message_dict["namespace_prefix"])
    if prefix:
        assert "RFC 1123" in messages


@pytest.mark.parametrize("prefix", ["net", "net-101", "a1", "x"])
def test_valid_namespace_prefixes(lab, prefix):
    lab.namespace_prefix = prefix
    lab.full_clean()


@pytest.mark.parametrize("name", ["Router", "web_1", "-web", "web-", "a" * 64, "web.lab", ""])
def test_machine_names_must_be_dns_labels(lab, image, name):
    machine = LabMachine(lab=lab, name=name, image=image, memory_mib=512)
    with pytest.raises(ValidationError) as excinfo:
        machine.full_clean()
    assert "name" in excinfo.value.message_dict


def test_machine_names_are_unique_within_a_lab_but_not_across_labs(lab, image):
    LabMachine.objects.create(lab=lab, name="router", image=image, memory_mib=512)
    duplicate = LabMachine(lab=lab, name="router", image=image, memory_mib=512)
    with pytest.raises(ValidationError, match="same name"):
        duplicate.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    other_lab = Lab.objects.create(name="Other", slug="other", namespace_prefix="other")
    LabMachine(lab=other_lab, name="router", image=image, memory_mib=512).full_clean()


def test_only_one_machine_opens_first(lab, image):
    LabMachine.objects.create(lab=lab, name="a", image=image, memory_mib=512, opens_first=True)
    second = LabMachine(lab=lab, name="b", image=image, memory_mib=512, opens_first=True)
    with pytest.raises(ValidationError, match="open first"):
        second.full_clean()


def test_machine_needs_at_least_the_images_memory_and_cores(lab, image):
    image.min_cores = 2
    image.save()
    machine = LabMachine(lab=lab, name="small", image=image, memory_mib=128, cores=1)
    with pytest.raises(ValidationError) as excinfo:
        machine.full_clean()
    assert "256 MiB" in excinfo.value.message_dict["memory_mib"][0]
    assert "2 cores" in excinfo.value.message_dict["cores"][0]


def test_machines_keep_their_authored_order(lab, image):
    for name, order in [("c", 3), ("a", 1), ("b", 2)]:
        LabMachine.objects.create(lab=lab, name=name, image=image, memory_mib=512, order=order)
    assert [m.name for m in lab.machines.all()] == ["a", "b", "c"]
    assert lab.total_memory_mib == 1536


def test_lab_slugs_are_unique(lab):
    with pytest.raises(ValidationError) as excinfo:
        Lab(name="Copy", slug="net-101", namespace_prefix="copy").full_clean()
    assert "slug" in excinfo.value.message_dict


@pytest.mark.parametrize(
    "reference",
    [
        "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        "registry.example.org:5000/team/debian:12",
        "localcluster/demo:latest",
        "busybox",
        "quay.io/x/y@sha256:" + "a" * 64,
    ],
)
def test_image_references_accepted(reference):
    VMImage(name="x", container_disk_image=reference, default_username="u").full_clean()


@pytest.mark.parametrize(
    "reference", ["", "Quay.io/UPPER/Case", "has space:1", "x:tag with space", "quay.io/x:"]
)
def test_bad_image_references_rejected(reference):
    with pytest.raises(ValidationError) as excinfo:
        VMImage(name="x", container_disk_image=reference, default_username="u").full_clean()
    assert "container_disk_image" in excinfo.value.message_dict


def test_an_image_needs_vnc_or_a_serial_console():
    image = VMImage(
        name="x", container_disk_image="a/b:1", default_username="u", has_vnc=False, has_serial_console=False
    )
    with pytest.raises(ValidationError, match="graphical desktop, a serial console"):
        image.full_clean()


def test_instance_namespaces_are_unique(lab, student):
    LabInstance.objects.create(lab=lab, owner=student, namespace="net101-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        LabInstance.objects.create(lab=lab, owner=student, namespace="net101-1")


def test_visible_to_filters_by_owner_and_publication(lab, student, other_student, instructor):
    mine = LabInstance.objects.create(lab=lab, owner=student)
    LabInstance.objects.create(lab=lab, owner=other_student)
    assert list(LabInstance.objects.visible_to(student)) == [mine]
    assert LabInstance.objects.visible_to(instructor).count() == 2
    assert list(Lab.objects.visible_to(student)) == []
    assert list(Lab.objects.visible_to(instructor)) == [lab]
