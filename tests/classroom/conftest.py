"""A class: a lab owned by an instructor, with a tutorial of two pages (one step checked), and
students' instances recorded in the database only (the class view never asks the cluster)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from tutorials.models import Step, StepCheck, Tutorial, TutorialPage


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def image(db) -> VMImage:
    return VMImage.objects.create(
        name="Demo",
        container_disk_image="localcluster/demo:latest",
        default_username="lab",
        has_ssh_server=True,
    )


@pytest.fixture
def lab(image, instructor) -> Lab:
    lab = Lab.objects.create(
        name="Networking", slug="networking", namespace_prefix="networking", published=True, owner=instructor
    )
    LabMachine.objects.create(lab=lab, name="web", image=image, memory_mib=256)
    return lab


@pytest.fixture
def tutorial(lab) -> Tutorial:
    tutorial = Tutorial.objects.create(title="Basics", slug="basics", published=True)
    tutorial.labs.add(lab)
    first = TutorialPage.objects.create(
        tutorial=tutorial, title="Addresses", body_markdown="Look around.", order=0
    )
    second = TutorialPage.objects.create(
        tutorial=tutorial, title="Services", body_markdown="Start nginx.", order=1
    )
    Step.objects.create(page=first, text_markdown="Find the address of `web`", order=0)
    Step.objects.create(page=first, text_markdown="Ping it", order=1)
    checked = Step.objects.create(page=second, text_markdown="Start nginx", order=0)
    StepCheck.objects.create(step=checked, machine="web", script="systemctl is-active nginx")
    return tutorial


@pytest.fixture
def steps(tutorial) -> list[Step]:
    return list(Step.objects.filter(page__tutorial=tutorial).order_by("page__order", "order"))


@pytest.fixture
def make_instance(db) -> Callable[..., LabInstance]:
    def make(
        *, owner, lab: Lab, status: str = LabInstance.Status.RUNNING, minutes_ago: int = 5
    ) -> LabInstance:
        now = timezone.now()
        instance = LabInstance.objects.create(
            lab=lab,
            owner=owner,
            status=status,
            namespace=f"class-{uuid.uuid4().hex[:12]}",
            started_at=now - timedelta(minutes=minutes_ago),
            expires_at=now + timedelta(minutes=60),
        )
        for machine in lab.machines.all():
            InstanceMachine.objects.create(
                instance=instance,
                name=machine.name,
                image_reference=machine.image.container_disk_image,
                cores=1,
                memory_mib=256,
                username="lab",
                password=f"pw-{uuid.uuid4().hex[:10]}",
                has_vnc=True,
                has_serial_console=True,
            )
        return instance

    return make


@pytest.fixture
def other_instructor(django_user_model):
    return django_user_model.objects.create_user(username="olga", password="pw-olga-1", is_staff=True)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw-root-1")
