"""Container machines over the API: instructors create them with validation; students see the kind
but not the command, environment or image of the machine's insides."""

import pytest

pytestmark = pytest.mark.django_db
TOOLS = "registry.example:5000/labs/tools:1"


def test_instructors_create_container_machines_with_field_errors(make_lab, instructor, student, client_for):
    lab = make_lab(machines=1)
    client = client_for(instructor)
    url = f"/api/labs/{lab.slug}/machines/"

    no_image = client.post(url, {"name": "tools", "kind": "container"}, format="json")
    bad = client.post(
        url,
        {
            "name": "tools",
            "kind": "container",
            "container_image": TOOLS,
            "env": {"1X": "y"},
            "ports": [99999],
        },
        format="json",
    )
    good = client.post(
        url,
        {
            "name": "tools",
            "kind": "container",
            "container_image": TOOLS,
            "command": ["sleep", "infinity"],
            "env": {"GREETING": "hello"},
            "shell_user": "1000",
            "ports": [8080],
            "memory_mib": 64,
        },
        format="json",
    )

    assert no_image.status_code == 400 and "container_image" in no_image.json()
    assert bad.status_code == 400 and set(bad.json()) == {"env", "ports"}
    assert good.status_code == 201, good.content
    assert good.json()["image_name"] is None and good.json()["has_serial_console"] is False

    seen = client_for(student).get(f"/api/labs/{lab.slug}/").json()["machines"]
    tools = next(m for m in seen if m["name"] == "tools")
    assert tools["kind"] == "container"
    assert not {"command", "env", "container_image", "args"} & set(tools)


def test_a_container_machine_offers_its_terminal_and_no_screen_or_serial_console():
    from labs.api.serializers import InstanceMachineSerializer
    from labs.models import InstanceMachine

    tools = InstanceMachine(
        instance_id=7, name="tools", kind="container", has_vnc=False, has_serial_console=False
    )
    assert InstanceMachineSerializer().get_consoles(tools) == {
        "vnc": None,
        "serial": None,
        "terminal": "/ws/instances/7/machines/tools/terminal",
    }
