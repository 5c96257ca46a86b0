"""Export -> import on a fresh database -> export gives identical files; imports are idempotent,
dry runs change nothing, and updates bring a lab to what the files say."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from labfiles.bundle import read_folder, read_zip, to_zip, write_folder
from labfiles.export import export_lab
from labfiles.importing import import_lab
from labs.models import Lab, LabMachine, VMImage
from tutorials.models import Step, StepCheck, Tutorial, TutorialMedia, TutorialPage

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "labfiles" / "demo"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def wipe() -> None:
    """A fresh database, as far as labs go (the test database itself is shared by the test)."""
    Tutorial.objects.all().delete()
    TutorialMedia.objects.all().delete()
    Lab.objects.all().delete()
    VMImage.objects.all().delete()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def authored_lab(media_root) -> Lab:
    image = VMImage.objects.create(
        name="Demo",
        container_disk_image="localcluster/demo:latest",
        default_username="lab",
        has_ssh_server=True,
    )
    lab = Lab.objects.create(
        name="Firewalls",
        slug="firewalls",
        namespace_prefix="fw",
        published=True,
        ready_instances=2,
        description="Two lines\nof text.",
    )
    LabMachine.objects.create(
        lab=lab,
        name="gw",
        image=image,
        memory_mib=256,
        order=3,
        opens_first=True,
        cloud_init_user_data="packages:\n  - nftables\n",
    )
    LabMachine.objects.create(lab=lab, name="client", image=image, memory_mib=256, order=7)
    diagram = TutorialMedia(title="Network diagram")
    diagram.file.save("diagram.png", ContentFile(PNG), save=True)
    tutorial = Tutorial.objects.create(title="Firewalls", slug="firewalls", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(
        tutorial=tutorial,
        title="Rules",
        order=10,
        body_markdown=f"# Rules\n\n![Network diagram]({diagram.file.url})\n\n```\nnft list ruleset\n```\n",
    )
    step = Step.objects.create(page=page, order=1, text_markdown="Block port 23 on `gw`.", weight=2)
    StepCheck.objects.create(step=step, machine="gw", script="nft list ruleset | grep -q 'dport 23 drop'")
    Step.objects.create(page=page, order=2, text_markdown="Ping `{{ vm.gw.ip }}`.")
    TutorialPage.objects.create(tutorial=tutorial, title="Wrap-up", order=20, body_markdown="Done.")
    return lab


def test_export_import_export_gives_identical_files(authored_lab, tmp_path):
    first = export_lab(authored_lab)
    assert sorted(first) == [
        "images.yaml",
        "lab.yaml",
        "machines.yaml",
        "media.yaml",
        "media/network-diagram.png",
        "tutorials/firewalls/pages/01-rules.md",
        "tutorials/firewalls/pages/02-wrap-up.md",
        "tutorials/firewalls/tutorial.yaml",
    ]
    assert b"](media/network-diagram.png)" in first["tutorials/firewalls/pages/01-rules.md"]
    assert first["media/network-diagram.png"] == PNG
    write_folder(first, tmp_path / "firewalls")

    wipe()
    lab, changes = import_lab(read_folder(tmp_path / "firewalls"))
    assert all(change.action == "create" for change in changes)

    assert export_lab(lab) == first
    page = TutorialPage.objects.get(title="Rules")
    media = TutorialMedia.objects.get()
    assert f"]({media.file.url})" in page.body_markdown and "<img" in page.body_html
    assert list(lab.machines.values_list("name", "order", "opens_first")) == [
        ("gw", 0, True),
        ("client", 1, False),
    ]
    assert StepCheck.objects.get().machine == "gw"


def test_the_zip_gives_the_same_files_and_the_same_bytes_each_time(authored_lab):
    bundle = export_lab(authored_lab)
    archive = to_zip(bundle, "firewalls")
    assert to_zip(export_lab(authored_lab), "firewalls") == archive
    assert read_zip(archive) == bundle


def test_a_second_import_changes_nothing(authored_lab):
    bundle = export_lab(authored_lab)
    wipe()
    import_lab(bundle)
    assert import_lab(bundle)[1] == []
    assert TutorialMedia.objects.count() == 1  # found again by title and content, not uploaded twice


def test_a_dry_run_says_what_would_change_and_changes_nothing(authored_lab, media_root):
    bundle = export_lab(authored_lab)
    bundle["lab.yaml"] = bundle["lab.yaml"].replace(b"name: Firewalls", b"name: Firewalls II")
    bundle["machines.yaml"] = bundle["machines.yaml"].split(b"- name: client")[0]
    files_before = sorted(p for p in Path(media_root).rglob("*") if p.is_file())

    lab, changes = import_lab(bundle, dry_run=True)

    assert lab is None
    assert [str(c) for c in changes] == ["update lab firewalls (name)", "delete machine client"]
    authored_lab.refresh_from_db()
    assert authored_lab.name == "Firewalls" and authored_lab.machines.count() == 2
    assert sorted(p for p in Path(media_root).rglob("*") if p.is_file()) == files_before

    import_lab(bundle)
    authored_lab.refresh_from_db()
    assert authored_lab.name == "Firewalls II"
    assert list(authored_lab.machines.values_list("name", flat=True)) == ["gw"]


def test_an_update_follows_pages_and_steps_by_position(authored_lab):
    bundle = export_lab(authored_lab)
    tutorial_yaml = bundle["tutorials/firewalls/tutorial.yaml"].decode()
    tutorial_yaml = tutorial_yaml.replace("- title: Wrap-up\n  file: pages/02-wrap-up.md\n  steps: []\n", "")
    bundle["tutorials/firewalls/tutorial.yaml"] = tutorial_yaml.encode()
    del bundle["tutorials/firewalls/pages/02-wrap-up.md"]
    rules_id = TutorialPage.objects.get(title="Rules").pk

    changes = [str(c) for c in import_lab(bundle)[1]]

    assert changes == ["delete page 'Wrap-up' of firewalls"]
    assert list(TutorialPage.objects.values_list("pk", flat=True)) == [rules_id]


def test_the_demo_labs_in_the_repository_round_trip():
    for folder in sorted(DEMO.iterdir()):
        bundle = read_folder(folder)
        lab, _ = import_lab(bundle)
        assert export_lab(lab) == bundle, folder.name


def test_load_demo_imports_the_demo_files():
    call_command("load_demo")
    assert set(Lab.objects.values_list("slug", flat=True)) == {p.name for p in DEMO.iterdir()}


@pytest.fixture
def mixed_lab() -> Lab:
    image = VMImage.objects.create(
        name="Demo", container_disk_image="localcluster/demo:latest", default_username="lab"
    )
    VMImage.objects.create(name="Unused", container_disk_image="localcluster/other:1", default_username="x")
    lab = Lab.objects.create(name="Web", slug="web", namespace_prefix="web")
    LabMachine.objects.create(
        lab=lab,
        name="proxy",
        kind=LabMachine.Kind.CONTAINER,
        container_image="registry.example.org/labs/nginx:1.27",
        command=["nginx"],
        args=["-g", "daemon off;"],
        env={"ZONE": "lab", "GREETING": "hello world", "A": ""},
        shell_user="101",
        ports=[80, 443],
        cores=2,
        memory_mib=64,
        order=0,
        opens_first=True,
    )
    LabMachine.objects.create(lab=lab, name="client", image=image, memory_mib=256, order=1)
    tutorial = Tutorial.objects.create(title="Web", slug="web")
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="Serve", body_markdown="Serve it.")
    step = Step.objects.create(page=page, text_markdown="Serve a page on `proxy`.")
    StepCheck.objects.create(step=step, machine="proxy", script="wget -qO- localhost")
    return lab


def test_a_lab_with_a_container_and_a_vm_round_trips(mixed_lab, tmp_path):
    first = export_lab(mixed_lab)
    assert first["machines.yaml"].decode() == (
        "- name: proxy\n"
        "  kind: container\n"
        "  container_image: registry.example.org/labs/nginx:1.27\n"
        "  command:\n"
        "  - nginx\n"
        "  args:\n"
        "  - -g\n"
        "  - daemon off;\n"
        "  env:\n"
        "    A: ''\n"
        "    GREETING: hello world\n"
        "    ZONE: lab\n"
        "  shell_user: '101'\n"
        "  ports:\n"
        "  - 80\n"
        "  - 443\n"
        "  cores: 2\n"
        "  memory_mib: 64\n"
        "  opens_first: true\n"
        "- name: client\n"
        "  image: Demo\n"
        "  cores: 1\n"
        "  memory_mib: 256\n"
        "  opens_first: false\n"
        "  cloud_init_user_data: ''\n"
    )
    assert b"name: Demo" in first["images.yaml"] and b"Unused" not in first["images.yaml"]
    write_folder(first, tmp_path / "web")

    wipe()
    lab, changes = import_lab(read_folder(tmp_path / "web"))
    assert "create machine proxy" in [str(c) for c in changes]

    assert export_lab(lab) == first
    proxy, client = lab.machines.all()
    assert (proxy.kind, proxy.image, proxy.shell_user, proxy.ports) == ("container", None, "101", [80, 443])
    assert (client.kind, client.image.name) == ("vm", "Demo")
    assert import_lab(first)[1] == []


def test_vm_only_labs_export_without_kind(authored_lab):
    assert b"kind" not in export_lab(authored_lab)["machines.yaml"]


def test_a_machine_that_becomes_a_container_loses_its_image_after_a_dry_run_shows_it(mixed_lab):
    bundle = export_lab(mixed_lab)
    bundle["machines.yaml"] = bundle["machines.yaml"].replace(
        b"- name: client\n  image: Demo\n  cores: 1\n  memory_mib: 256\n  opens_first: false\n"
        b"  cloud_init_user_data: ''\n",
        b"- name: client\n  kind: container\n  container_image: busybox:1.36\n  command: [sleep, infinity]\n",
    )

    lab, changes = import_lab(bundle, dry_run=True)

    assert lab is None
    assert [str(c) for c in changes] == [
        "update machine client (kind, image, container_image, command, memory_mib)"
    ]
    client = mixed_lab.machines.get(name="client")
    assert (client.kind, client.image.name) == ("vm", "Demo")

    import_lab(bundle)
    client.refresh_from_db()
    assert (client.kind, client.image, client.command) == ("container", None, ["sleep", "infinity"])
    client.full_clean()
