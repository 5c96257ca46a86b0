"""Fixtures for the REST API tests: clients that hold a JWT, and labs and instances to look at.

The lab and cluster fixtures are the orchestration tests' own (tests/labs/conftest.py), imported so
both suites start labs the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from labs.models import InstanceMachine, Lab, LabInstance
from tests.labs.conftest import app_cluster, cluster_watcher, image, make_lab, wait_for  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Autouse fixtures run first, so the users of tests/conftest.py are created with this hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Every test starts with nothing cached (rate limits: tests/conftest.py)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def media_root(settings, tmp_path):
    """Uploads go to a directory of this test's own (as in tests/tutorials/test_media_serving.py)."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def bearer(user) -> str:
    return f"Bearer {AccessToken.for_user(user)}"


@pytest.fixture
def client_for(db) -> Callable[..., APIClient]:
    """An API client that authenticates as the user with a JWT, or anonymous for None."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=bearer(user))
        return client

    return make


@pytest.fixture
def make_instance(db) -> Callable[..., LabInstance]:
    """An instance recorded in the database only (no cluster objects), in the given status."""

    def make(*, owner, lab: Lab, status: str = LabInstance.Status.STOPPED, machines: int = 1) -> LabInstance:
        instance = LabInstance.objects.create(
            lab=lab, owner=owner, status=status, namespace=f"api-{uuid.uuid4().hex[:12]}"
        )
        InstanceMachine.objects.bulk_create(
            InstanceMachine(
                instance=instance,
                name=f"vm{index}",
                image_reference="quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
                cores=1,
                memory_mib=256,
                username="cirros",
                password=f"secret-{uuid.uuid4().hex[:10]}",
                has_vnc=True,
                has_serial_console=index == 0,
                order=index,
            )
            for index in range(machines)
        )
        return instance

    return make
