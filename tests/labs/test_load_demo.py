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
    assert desktop.image.container_disk_image == "127.0.0.1:5055/laborchestrator/desktop:1"
    assert desktop.image.kernel_path == "/boot/vmlinuz"
    # The desktop's Screen is what opens: it has no serial console to open instead.
    assert (desktop.image.has_vnc, desktop.image.has_serial_console) == (True, False)
    assert desktop.memory_mib >= desktop.image.min_memory_mib
    assert server.image.container_disk_image == "127.0.0.1:5055/laborchestrator/demo:1"
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
    assert (server.kind, server.image.container_disk_image) == ("vm", "127.0.0.1:5055/laborchestrator/demo:1")
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


def test_demo_images_follow_the_registry_unless_an_instructor_changed_them():
    """`load_demo --registry` (make demo-images, or make run's registry on another port) moves the
    demo images there; an image an instructor pointed elsewhere stays. The tag is the one
    `python -m localcluster demo-images` pushes."""
    from labfiles.management.commands.load_demo import DEMO_TAG
    from labs.models import VMImage
    from localcluster.registry import demo

    assert DEMO_TAG == demo.DEMO_TAG
    call_command("load_demo", "--registry", "127.0.0.1:6000")
    desktop = VMImage.objects.get(name="Lab Orchestrator desktop")
    assert desktop.container_disk_image == demo.demo_reference("127.0.0.1:6000", "desktop")
    call_command("load_demo", "--registry", "registry.example.org")
    desktop.refresh_from_db()
    assert desktop.container_disk_image == "registry.example.org/laborchestrator/desktop:1"
    desktop.container_disk_image = "registry.example.org/team/desktop:2"
    desktop.save()
    call_command("load_demo", "--registry", "127.0.0.1:6001")
    desktop.refresh_from_db()
    assert desktop.container_disk_image == "registry.example.org/team/desktop:2"
    assert not VMImage.objects.filter(container_disk_image__startswith="localcluster/").exists()
    assert "docker.io" not in " ".join(VMImage.objects.values_list("container_disk_image", flat=True))
