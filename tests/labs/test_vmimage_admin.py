"""The VM image form: a reference that names a resolvable registry, checked against the registry on
save (a warning, never a refusal), pinning by digest, and sealed pull credentials that reach the lab
namespace as a kubernetes.io/dockerconfigjson Secret."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.messages import get_messages

from labs import manifests
from labs.models import VMImage
from localcluster.registry.containerdisk import build_layout, disk_files

pytestmark = pytest.mark.django_db


def image_form(reference: str, **fields: str) -> dict[str, str]:
    return {
        "name": "Disk",
        "description": "",
        "container_disk_image": reference,
        "default_username": "lab",
        "has_vnc": "on",
        "has_serial_console": "on",
        "min_memory_mib": "128",
        "min_cores": "1",
        **fields,
    }


@pytest.fixture(scope="module")
def pushed_digest(oci_registry, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("admin-image")
    disk = folder / "disk.img"
    disk.write_bytes(b"admin form disk")
    build_layout(folder / "layout", disk_files(disk))
    return oci_registry.push_layout(folder / "layout", "admin/disk:1.0")


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        ("demo:latest", "docker.io"),
        ("Not A Reference", "not a container image reference"),
        ("no-such-registry.invalid/team/disk:1", "unknown"),
    ],
)
def test_bad_references_are_field_errors(client, instructor, reference, error):
    client.force_login(instructor)
    response = client.post("/admin/labs/vmimage/add/", image_form(reference))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not VMImage.objects.exists()


def test_a_reference_the_registry_serves_saves_and_suggests_pinning(
    client, instructor, oci_registry, pushed_digest
):
    client.force_login(instructor)
    response = client.post(
        "/admin/labs/vmimage/add/", image_form(oci_registry.reference("admin/disk:1.0")), follow=True
    )
    assert response.status_code == 200
    said = " ".join(texts(response))
    assert pushed_digest in said and "pin" in said.lower()
    assert "could not check" not in said


def test_a_reference_the_registry_lacks_is_saved_with_a_warning(client, instructor, oci_registry):
    client.force_login(instructor)
    reference = oci_registry.reference("admin/never-pushed:1")
    response = client.post("/admin/labs/vmimage/add/", image_form(reference), follow=True)
    assert VMImage.objects.get().container_disk_image == reference
    assert any("could not check" in text and "manifest unknown" in text for text in texts(response))


def test_pin_to_digest_resolves_the_tag(client, instructor, oci_registry, pushed_digest):
    image = VMImage.objects.create(
        name="Disk", container_disk_image=oci_registry.reference("admin/disk:1.0"), default_username="lab"
    )
    client.force_login(instructor)
    response = client.post(
        "/admin/labs/vmimage/", {"action": "pin_to_digest", "_selected_action": [str(image.pk)]}, follow=True
    )
    assert response.status_code == 200
    image.refresh_from_db()
    assert image.container_disk_image == f"{oci_registry.reference('admin/disk')}@{pushed_digest}"
    assert image.is_pinned
    assert b"pinned by digest" in client.get("/admin/labs/vmimage/").content.lower()
    # The pinned reference still resolves, to the same digest.
    response = client.post(
        "/admin/labs/vmimage/", {"action": "pin_to_digest", "_selected_action": [str(image.pk)]}, follow=True
    )
    image.refresh_from_db()
    assert image.container_disk_image.endswith(f"admin/disk@{pushed_digest}")


def test_private_registry_credentials_are_sealed_and_used(client, instructor, start_oci_registry, tmp_path):
    registry = start_oci_registry(users={"ann": "registry-pass-1"})
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"private")
    build_layout(tmp_path / "layout", disk_files(disk))
    digest = registry.push_layout(tmp_path / "layout", "admin/private:1")
    client.force_login(instructor)

    response = client.post(
        "/admin/labs/vmimage/add/",
        image_form(
            registry.reference("admin/private:1"),
            pull_secret_username="ann",
            pull_secret_password="registry-pass-1",
        ),
        follow=True,
    )

    said = " ".join(texts(response))
    assert digest in said and "could not check" not in said  # the check used the credentials
    image = VMImage.objects.get()
    assert "registry-pass-1" not in image.pull_secret_password_sealed
    assert image.pull_credentials()["auths"][registry.host]["password"] == "registry-pass-1"
    assert b"registry-pass-1" not in client.get(f"/admin/labs/vmimage/{image.pk}/change/").content

    # Saving again without a password keeps it; "forget" drops it.
    client.post(
        f"/admin/labs/vmimage/{image.pk}/change/",
        image_form(image.container_disk_image, pull_secret_username="ann"),
    )
    image.refresh_from_db()
    assert image.pull_credentials() is not None
    client.post(
        f"/admin/labs/vmimage/{image.pk}/change/",
        image_form(image.container_disk_image, pull_secret_username="ann", clear_pull_secret="on"),
    )
    image.refresh_from_db()
    assert image.pull_credentials() is None and image.pull_secret_username == ""


def test_a_password_without_a_user_name_is_refused(client, instructor, oci_registry):
    client.force_login(instructor)
    response = client.post(
        "/admin/labs/vmimage/add/",
        image_form(oci_registry.reference("admin/disk:1.0"), pull_secret_password="x"),
    )
    assert response.status_code == 200
    assert "needs its user name" in response.content.decode()


def test_machines_with_credentials_get_a_pull_secret_in_their_namespace():
    config = {"auths": {"registry.example.org": {"username": "u", "password": "p", "auth": "dTpw"}}}
    machine = manifests.MachineSpec(
        name="web",
        image_reference="registry.example.org/team/disk:1",
        cores=1,
        memory_mib=256,
        username="lab",
        password="pw",
        has_vnc=True,
        has_serial_console=True,
        pull_credentials=config,
    )
    labels = {"app.kubernetes.io/managed-by": "laborchestrator"}
    secret = manifests.make_pull_secret(namespace="lab-1", labels=labels, machine=machine)
    vmi = manifests.make_vmi(namespace="lab-1", labels=labels, machine=machine)

    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])) == config
    volume = next(v for v in vmi["spec"]["volumes"] if v["name"] == "rootdisk")
    assert volume["containerDisk"] == {
        "image": "registry.example.org/team/disk:1",
        "imagePullSecret": secret["metadata"]["name"],
    }
    anonymous = manifests.make_vmi(
        namespace="lab-1",
        labels=labels,
        machine=manifests.MachineSpec(**{**machine.__dict__, "pull_credentials": None}),
    )
    assert "imagePullSecret" not in anonymous["spec"]["volumes"][0]["containerDisk"]


def test_a_start_copies_the_pull_secret_into_the_lab_namespace(
    app_cluster, local_cluster, make_lab, image, student
):
    """The kubelet reads `imagePullSecret` from the VMI's own namespace: the start creates it there."""
    from kubernetes import client

    from labs import lifecycle

    image.pull_secret_username = "ann"
    image.set_pull_password("registry-pass-2")
    image.kernel_path, image.initrd_path, image.kernel_args = (
        "/boot/vmlinuz",
        "/boot/initrd.img",
        "console=ttyS0",
    )
    image.save()
    instance = lifecycle.instance_start(user=student, lab=make_lab())

    api = local_cluster.api_client("admin")
    secret = client.CoreV1Api(api).read_namespaced_secret("vm0-image-pull", instance.namespace)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
    assert config["auths"]["quay.io"]["password"] == "registry-pass-2"
    vmi = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kubevirt.io", "v1", instance.namespace, "virtualmachineinstances", "vm0"
    )
    container = vmi["spec"]["domain"]["firmware"]["kernelBoot"]["container"]
    assert container == {
        "image": image.container_disk_image,
        "imagePullSecret": "vm0-image-pull",
        "kernelPath": "/boot/vmlinuz",
        "initrdPath": "/boot/initrd.img",
    }
    assert vmi["spec"]["domain"]["firmware"]["kernelBoot"]["kernelArgs"] == "console=ttyS0"
    assert [v["name"] for v in vmi["spec"]["volumes"]] == ["cloudinit"]
