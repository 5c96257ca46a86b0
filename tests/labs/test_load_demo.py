import pytest
from django.core.management import call_command

from labs.models import Lab
from tutorials.models import Step, Tutorial

pytestmark = pytest.mark.django_db


def test_demo_lab_and_tutorial_are_loaded_once_and_edits_survive():
    call_command("load_demo")
    lab = Lab.objects.get(slug="explore-your-lab-network")
    assert lab.published
    assert [m.name for m in lab.machines.all()] == ["alpha", "beta"]
    tutorial = Tutorial.objects.get(slug="explore-your-lab-network")
    assert list(tutorial.labs.all()) == [lab]
    assert tutorial.pages.count() == 2
    assert "admonition" in tutorial.pages.first().body_html  # the knowledge box rendered
    steps = Step.objects.filter(page__tutorial=tutorial).count()

    lab.name = "Edited by an instructor"
    lab.save()
    call_command("load_demo")
    assert Lab.objects.get(slug="explore-your-lab-network").name == "Edited by an instructor"
    assert Step.objects.filter(page__tutorial=tutorial).count() == steps


def test_desktop_lab_comes_first_with_a_screen_only_desktop_and_a_server():
    """A new user's catalog opens with the graphical desktop (labs are listed by name), beside a
    small server whose web page the desktop's browser opens."""
    call_command("load_demo")
    assert list(Lab.objects.published().values_list("slug", flat=True)) == [
        "desktop-in-your-browser",
        "containers-beside-a-vm",
        "explore-your-lab-network",
    ]
    lab = Lab.objects.get(slug="desktop-in-your-browser")
    desktop, server = lab.machines.all()
    assert (desktop.name, desktop.opens_first, server.name) == ("desktop", True, "server")
    assert desktop.image.container_disk_image == "localcluster/desktop:latest"
    # The desktop's Screen is what opens: it has no serial console to open instead.
    assert (desktop.image.has_vnc, desktop.image.has_serial_console) == (True, False)
    assert desktop.memory_mib >= desktop.image.min_memory_mib
    assert server.image.container_disk_image == "localcluster/demo:latest"
    tutorial = Tutorial.objects.get(slug="desktop-in-your-browser")
    assert list(tutorial.labs.all()) == [lab]
    bodies = " ".join(page.body_markdown for page in tutorial.pages.all())
    assert "{{ vm.server.ip }}" in bodies and "httpd" in bodies
    call_command("load_demo")
    assert Lab.objects.filter(slug="desktop-in-your-browser").count() == 1
    assert lab.machines.count() == 2


def test_the_containers_lab_has_a_tools_container_beside_a_vm_and_a_checked_ping():
    call_command("load_demo")
    lab = Lab.objects.get(slug="containers-beside-a-vm")
    tools, server = lab.machines.all()
    assert (tools.kind, tools.container_image, tools.opens_first) == (
        "container",
        "registry.localcluster.test/laborchestrator/tools:1",
        True,
    )
    assert (server.kind, server.image.container_disk_image) == ("vm", "localcluster/demo:latest")
    tools.full_clean()
    server.full_clean()
    tutorial = Tutorial.objects.get(slug="containers-beside-a-vm")
    (check,) = [
        step.step_check
        for page in tutorial.pages.all()
        for step in page.steps.all()
        if hasattr(step, "step_check")
    ]
    assert check.machine == "tools" and "server.lab" in check.script
