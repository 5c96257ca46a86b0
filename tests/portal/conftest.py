"""Fixtures for the student's pages: a published lab with a tutorial, instances recorded in the
database only (the pages render without asking the cluster; their scripts call the API)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from tutorials.models import Step, Tutorial, TutorialPage

MOODLE = "https://moodle.example.org"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def image(db) -> VMImage:
    return VMImage.objects.create(
        name="Demo", container_disk_image="localcluster/demo:latest", default_username="lab"
    )


@pytest.fixture
def lab(image) -> Lab:
    lab = Lab.objects.create(
        name="Explore your lab network",
        slug="explore",
        namespace_prefix="explore",
        published=True,
        description="Two machines <b>and</b> a network.",
    )
    LabMachine.objects.create(lab=lab, name="alpha", image=image, memory_mib=256, order=0)
    LabMachine.objects.create(lab=lab, name="beta", image=image, memory_mib=256, order=1, opens_first=True)
    tutorial = Tutorial.objects.create(title="Networking basics", slug="networking", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="Addresses", body_markdown="Hello")
    Step.objects.create(page=page, text_markdown="Ping `{{ vm.beta.ip }}`")
    return lab


@pytest.fixture
def hidden_lab(image) -> Lab:
    return Lab.objects.create(name="Draft lab", slug="draft", namespace_prefix="draft", published=False)


@pytest.fixture
def make_instance(db) -> Callable[..., LabInstance]:
    def make(*, owner, lab: Lab, status: str = LabInstance.Status.RUNNING) -> LabInstance:
        instance = LabInstance.objects.create(
            lab=lab, owner=owner, status=status, namespace=f"portal-{uuid.uuid4().hex[:12]}"
        )
        for index, machine in enumerate(lab.machines.all()):
            InstanceMachine.objects.create(
                instance=instance,
                name=machine.name,
                image_reference=machine.image.container_disk_image,
                cores=1,
                memory_mib=256,
                username="lab",
                password=f"pw-{machine.name}-{uuid.uuid4().hex[:10]}",
                has_vnc=True,
                has_serial_console=True,
                order=index,
                opens_first=machine.opens_first,
            )
        return instance

    return make
