"""Fixtures for classes: an instructor's class offering a published lab, and a second instructor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from classes.models import Classroom
from labs.models import Lab, LabMachine, VMImage


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def lab(db) -> Lab:
    image = VMImage.objects.create(
        name="Demo", container_disk_image="localcluster/demo:latest", default_username="lab"
    )
    lab = Lab.objects.create(name="Firewalls", slug="firewalls", namespace_prefix="firewalls", published=True)
    LabMachine.objects.create(lab=lab, name="alpha", image=image, memory_mib=256)
    return lab


@pytest.fixture
def other_lab(lab) -> Lab:
    return Lab.objects.create(name="Routing", slug="routing", namespace_prefix="routing", published=True)


@pytest.fixture
def classroom(instructor, lab) -> Classroom:
    classroom = Classroom.objects.create(
        name="Networks 101",
        owner=instructor,
        code_expires_at=timezone.now() + timedelta(days=1),
        code_max_uses=3,
    )
    classroom.labs.add(lab)
    return classroom


@pytest.fixture
def other_instructor(django_user_model):
    return django_user_model.objects.create_user(username="otto", password="pw-otto-1", is_staff=True)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw-root-1")
