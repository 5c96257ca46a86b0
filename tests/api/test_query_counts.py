"""Lists cost the same number of queries for 1 item as for 20."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labs.models import Lab, LabInstance, LabMachine, VMImage
from tutorials.models import Tutorial, TutorialMedia

pytestmark = pytest.mark.django_db


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def add_labs(count: int, image) -> None:
    for _ in range(count):
        index = Lab.objects.count()
        lab = Lab.objects.create(
            name=f"Lab {index}", slug=f"lab-{index}", namespace_prefix=f"q{index}", published=True
        )
        for machine in range(2):
            LabMachine.objects.create(lab=lab, name=f"vm{machine}", image=image, order=machine)
        tutorial = Tutorial.objects.create(title=f"T {index}", slug=f"t-{index}", published=True)
        tutorial.labs.add(lab)


@pytest.mark.parametrize("who", ["student", "instructor"])
def test_lab_list_queries_do_not_grow(client_for, image, who, request):
    client = client_for(request.getfixturevalue(who))
    add_labs(1, image)
    one = queries_for(client, "/api/labs/")
    add_labs(19, image)

    assert Lab.objects.count() == 20
    assert queries_for(client, "/api/labs/") == one


@pytest.mark.parametrize("who", ["student", "instructor"])
def test_instance_list_queries_do_not_grow(client_for, make_instance, make_lab, student, who, request):
    client = client_for(request.getfixturevalue(who))
    lab = make_lab()
    make_instance(owner=student, lab=lab, machines=2)
    one = queries_for(client, "/api/instances/")
    for _ in range(19):
        make_instance(owner=student, lab=make_lab(), machines=2)

    assert LabInstance.objects.count() == 20
    assert len(client.get("/api/instances/").json()["results"]) == 20
    assert queries_for(client, "/api/instances/") == one


def test_image_list_queries_do_not_grow(client_for, student, image):
    client = client_for(student)
    one = queries_for(client, "/api/images/")
    for index in range(19):
        VMImage.objects.create(name=f"img {index}", container_disk_image="x/y:1", default_username="u")

    assert queries_for(client, "/api/images/") == one


def test_media_list_queries_do_not_grow(client_for, instructor, media_root):
    client = client_for(instructor)

    def add_media(count: int) -> None:
        for index in range(count):
            file = SimpleUploadedFile(f"notes{index}.txt", b"Hello")
            TutorialMedia.objects.create(title=f"Notes {index}", file=file, uploaded_by=instructor)

    add_media(1)
    one = queries_for(client, "/api/media/")
    add_media(19)

    assert queries_for(client, "/api/media/") == one


@pytest.mark.parametrize("machines", [1, 2, 8])
def test_an_instance_detail_costs_a_fixed_number_of_queries_and_no_cluster_call(
    client_for, make_instance, make_lab, student, machines, django_assert_max_num_queries, settings
):
    """What the instance page polls: the same few queries whatever the number of machines, and no
    cluster at all (the KUBECONFIG below does not exist; a call would answer 503)."""
    settings.KUBECONFIG = "/nonexistent/kubeconfig"
    client = client_for(student)
    instance = make_instance(
        owner=student, lab=make_lab(), machines=machines, status=LabInstance.Status.RUNNING
    )
    # The user (JWT), the instance with lab and owner, its machines, the watcher's heartbeat.
    with django_assert_max_num_queries(4):
        response = client.get(f"/api/instances/{instance.pk}/")
    assert response.status_code == 200
    assert len(response.json()["machines"]) == machines
