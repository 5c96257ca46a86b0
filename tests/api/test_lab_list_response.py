"""`GET /api/labs/` answers the same bytes it answered before its serialisation was made fast.

The files in responses/ were recorded from the generic DRF serialisers (the code before the fast
path, 2026-11-25) for the fixture set below; the fast path must reproduce them byte for byte, for
students and instructors, for the list and a single lab. Objects get explicit ids and timestamps, so
the answer does not depend on the order tests run in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from labs.models import Lab, LabMachine, VMImage
from tutorials.models import Tutorial

RESPONSES = Path(__file__).parent / "responses"
CREATED = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
UPDATED = datetime(2026, 11, 24, 17, 5, 0, tzinfo=UTC)


@pytest.fixture
def lab_set(db) -> None:
    cirros = VMImage.objects.create(
        id=901,
        name="Cirros «tiny»",
        container_disk_image="quay.io/kubevirt/cirros:1",
        default_username="cirros",
    )
    text_only = VMImage.objects.create(
        id=902,
        name='Router "text"',
        container_disk_image="r/router:2",
        default_username="admin",
        has_vnc=False,
        has_serial_console=True,
    )
    for number in range(1, 6):
        lab = Lab.objects.create(
            id=800 + number,
            name=f"Lab {number} — ünïcode",
            slug=f"golden-{number}",
            description='Two lines\nand a </script> and a "quote" and \\ backslash' if number % 2 else "",
            published=number != 3,
            instances_per_user=number,
            lifetime_minutes=30 * number,
            idle_timeout_minutes=10 + number,
            namespace_prefix=f"golden{number}",
        )
        for order in range(number % 3 + 1):
            LabMachine.objects.create(
                id=700 + number * 10 + order,
                lab=lab,
                name=f"vm{order}",
                image=text_only if order == 1 else cirros,
                cores=order + 1,
                memory_mib=256 * (order + 1),
                cloud_init_user_data="#cloud-config\npackages: [nginx]\n" if order == 0 else "",
                order=order,
                opens_first=order == 0,
            )
        if number != 5:
            tutorial = Tutorial.objects.create(
                id=600 + number,
                title=f"Tutorial {number}",
                slug=f"golden-tutorial-{number}",
                published=number != 2,
            )
            tutorial.labs.add(lab)
    Lab.objects.filter(id__gt=800).update(created_at=CREATED, updated_at=UPDATED)


@pytest.mark.parametrize("who", ["student", "instructor"])
@pytest.mark.parametrize(
    ("answer", "path"),
    [("list", "/api/labs/"), ("detail", "/api/labs/golden-1/"), ("page-2", "/api/labs/?page_size=2&page=2")],
)
def test_the_lab_answers_are_byte_identical(client_for, lab_set, who, answer, path, request):
    response = client_for(request.getfixturevalue(who)).get(path)
    assert response.status_code == 200
    assert response.content == (RESPONSES / f"labs-{who}-{answer}.json").read_bytes()


@pytest.mark.parametrize("who", ["student", "instructor"])
def test_each_listed_lab_is_what_the_lab_serializer_gives(client_for, lab_set, who, request):
    """The list builds its answer from rows; a single lab is DRF's serializer. Both must stay one
    representation when a field is added to either."""
    client = client_for(request.getfixturevalue(who))
    listed = client.get("/api/labs/").json()["results"]
    assert len(listed) == (5 if who == "instructor" else 4)
    for lab in listed:
        assert client.get(f"/api/labs/{lab['slug']}/").json() == lab
