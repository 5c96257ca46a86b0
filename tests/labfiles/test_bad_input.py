"""Bad lab files are refused before anything is written, naming the file and the line."""

from __future__ import annotations

import io
import zipfile

import pytest

from labfiles.bundle import read_folder, read_zip
from labfiles.importing import import_lab
from labfiles.yamlfile import LabFileError
from labs.models import Lab, VMImage

pytestmark = pytest.mark.django_db

LAB = b"""name: Firewalls
slug: firewalls
namespace_prefix: fw
published: true
"""
IMAGES = b"""- name: Demo
  container_disk_image: localcluster/demo:latest
  default_username: lab
  has_ssh_server: true
"""
MACHINES = b"""- name: gw
  image: Demo
  memory_mib: 256
"""
# A container machine, to follow MACHINES (lines 4-6).
TOOLS = b"""- name: tools
  kind: container
  container_image: tools:1
"""
TUTORIAL = b"""title: Firewalls
slug: firewalls
pages:
- title: Rules
  file: pages/01-rules.md
  steps:
  - text: Block port 23.
    check:
      machine: gw
      script: exit 0
"""


def bundle(**changes: bytes | None) -> dict[str, bytes]:
    files = {
        "lab.yaml": LAB,
        "images.yaml": IMAGES,
        "machines.yaml": MACHINES,
        "tutorials/firewalls/tutorial.yaml": TUTORIAL,
        "tutorials/firewalls/pages/01-rules.md": b"# Rules\n",
    }
    for name, data in changes.items():
        name = name.replace("__", "/").replace("_yaml", ".yaml").replace("_md", ".md")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


def refused(files: dict[str, bytes]) -> LabFileError:
    with pytest.raises(LabFileError) as raised:
        import_lab(files)
    assert not Lab.objects.exists() and not VMImage.objects.exists()  # nothing written
    return raised.value


def test_the_good_bundle_imports():
    lab, _ = import_lab(bundle())
    assert lab.machines.get().name == "gw"


@pytest.mark.parametrize(
    ("changes", "file", "line", "words"),
    [
        ({"lab_yaml": LAB + b"colour: red\n"}, "lab.yaml", 5, "unknown key 'colour'"),
        (
            {"lab_yaml": LAB.replace(b"published: true", b"published: yes please")},
            "lab.yaml",
            4,
            "true or false",
        ),
        (
            {"lab_yaml": LAB.replace(b"namespace_prefix: fw", b"namespace_prefix: FW_1")},
            "lab.yaml",
            3,
            "namespace_prefix",
        ),
        ({"lab_yaml": LAB + b"lifetime_minutes: 99999999\n"}, "lab.yaml", 5, "lifetime_minutes"),
        ({"lab_yaml": b"name: [unclosed\n"}, "lab.yaml", 2, ""),
        ({"lab_yaml": b"name: !!python/object/apply:os.system ['true']\n"}, "lab.yaml", 1, "python/object"),
        ({"lab_yaml": b"a: &x [1]\nb: *x\n"}, "lab.yaml", 2, "aliases"),
        ({"lab_yaml": b"name: x\nname: y\n"}, "lab.yaml", 2, "appears twice"),
        ({"lab_yaml": b"x: " + b"[" * 40 + b"]" * 40 + b"\n"}, "lab.yaml", 1, "levels deep"),
        ({"lab_yaml": b"- just a list\n"}, "lab.yaml", 1, "must be a mapping"),
        ({"lab_yaml": b"name: caf\xe9\n"}, "lab.yaml", 1, "not UTF-8"),
        (
            {"machines_yaml": MACHINES.replace(b"image: Demo", b"image: Nope")},
            "machines.yaml",
            2,
            "no image 'Nope'",
        ),
        ({"machines_yaml": MACHINES.replace(b"256", b"16")}, "machines.yaml", 3, "at least 128 MiB"),
        ({"machines_yaml": MACHINES.replace(b"name: gw", b"name: Gate_Way")}, "machines.yaml", 1, "name"),
        ({"machines_yaml": MACHINES + MACHINES}, "machines.yaml", 4, "appears twice"),
        (
            {"machines_yaml": MACHINES + b"  cloud_init_user_data: '!!python/name:os.system x'\n"},
            "machines.yaml",
            4,
            "cloud_init_user_data",
        ),
        (
            {"tutorials__firewalls__tutorial_yaml": TUTORIAL.replace(b"machine: gw", b"machine: db")},
            "tutorials/firewalls/tutorial.yaml",
            9,
            "no machine 'db'",
        ),
        (
            {"tutorials__firewalls__tutorial_yaml": TUTORIAL.replace(b"slug: firewalls", b"slug: other")},
            "tutorials/firewalls/tutorial.yaml",
            2,
            "folder's name",
        ),
        (
            {"tutorials__firewalls__pages__01-rules_md": None},
            "tutorials/firewalls/tutorial.yaml",
            5,
            "is missing",
        ),
        (
            {"images_yaml": IMAGES.replace(b"  default_username: lab\n", b"")},
            "images.yaml",
            1,
            "needs 'default_username'",
        ),
        ({"lab_yaml": None}, "lab.yaml", None, "missing"),
        ({"machines_yaml": b"- name: gw\n  memory_mib: 256\n"}, "machines.yaml", 1, "needs a VM image"),
        (
            {"machines_yaml": MACHINES + b"  command: [sleep, infinity]\n"},
            "machines.yaml",
            4,
            "Only container machines",
        ),
        ({"machines_yaml": MACHINES + b"  kind: pod\n"}, "machines.yaml", 4, "not a valid choice"),
        (
            {"machines_yaml": MACHINES + TOOLS.replace(b"  container_image: tools:1\n", b"")},
            "machines.yaml",
            4,
            "needs a container image",
        ),
        ({"machines_yaml": MACHINES + TOOLS + b"  image: Demo\n"}, "machines.yaml", 7, "has no VM image"),
        ({"machines_yaml": MACHINES + TOOLS + b"  image: Nope\n"}, "machines.yaml", 7, "has no VM image"),
        (
            {"machines_yaml": MACHINES + TOOLS + b"  cloud_init_user_data: 'packages: []'\n"},
            "machines.yaml",
            7,
            "do not run cloud-init",
        ),
        (
            {"machines_yaml": MACHINES + TOOLS.replace(b"tools:1", b"'Not An Image!'")},
            "machines.yaml",
            6,
            "not a container image reference",
        ),
        (
            {"machines_yaml": MACHINES + TOOLS + b"  env: [A=1]\n"},
            "machines.yaml",
            7,
            "'env' must be a mapping",
        ),
        ({"machines_yaml": MACHINES + TOOLS + b"  env: {A: 1}\n"}, "machines.yaml", 7, "string values"),
        (
            {"machines_yaml": MACHINES + TOOLS + b"  command: sleep\n"},
            "machines.yaml",
            7,
            "'command' must be a list",
        ),
        ({"machines_yaml": MACHINES + TOOLS + b"  args: [1, 2]\n"}, "machines.yaml", 7, "list of strings"),
        ({"machines_yaml": MACHINES + TOOLS + b"  ports: [70000]\n"}, "machines.yaml", 7, "ports"),
        ({"machines_yaml": MACHINES + TOOLS + b"  shell_user: Root!\n"}, "machines.yaml", 7, "shell_user"),
        ({"machines_yaml": MACHINES + TOOLS + b"  memory_mib: 8\n"}, "machines.yaml", 7, "memory_mib"),
        (
            {"images_yaml": IMAGES.replace(b"has_ssh_server: true", b"has_ssh_server: false")},
            "tutorials/firewalls/tutorial.yaml",
            9,
            "checks need an SSH server",
        ),
    ],
)
def test_bad_input_names_the_file_and_line(changes, file, line, words):
    error = refused(bundle(**changes))
    assert (error.file, error.line) == (file, line), str(error)
    assert words in error.message
    if line:
        assert f"{file}, line {line}:" in str(error)


def test_a_check_on_a_container_needs_no_ssh_server():
    tutorial = TUTORIAL.replace(b"machine: gw", b"machine: tools")
    lab, _ = import_lab(bundle(machines_yaml=MACHINES + TOOLS, tutorials__firewalls__tutorial_yaml=tutorial))
    assert lab.machines.get(name="tools").is_container


def test_a_container_beside_a_vm_imports_without_an_image_of_its_own():
    lab, _ = import_lab(bundle(machines_yaml=MACHINES + TOOLS + b"  env: {GREETING: hello}\n  ports: [80]\n"))
    gw, tools = lab.machines.all()
    assert (gw.kind, gw.image.name) == ("vm", "Demo")
    assert (tools.kind, tools.image, tools.container_image) == ("container", None, "tools:1")
    assert (tools.env, tools.ports, tools.command) == ({"GREETING": "hello"}, [80], [])
    tools.full_clean()


def test_a_page_over_the_markdown_limit_is_refused(settings):
    settings.TUTORIAL_MARKDOWN_MAX_BYTES = 100
    error = refused(bundle(**{"tutorials__firewalls__pages__01-rules_md": b"x" * 200}))
    assert error.file == "tutorials/firewalls/pages/01-rules.md"


def test_yaml_files_over_the_size_limit_are_refused():
    error = refused(bundle(lab_yaml=LAB + b"#" * (300 * 1024)))
    assert error.file == "lab.yaml" and "at most" in error.message


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("name", ["../evil.yaml", "/etc/passwd", "a/../../b"])
def test_zip_paths_outside_the_folder_are_refused(name):
    with pytest.raises(LabFileError, match="outside"):
        read_zip(zip_of({"lab.yaml": LAB, name: b"x"}))


def test_not_a_zip_is_refused():
    with pytest.raises(LabFileError, match="not a zip"):
        read_zip(b"hello")


def test_symbolic_links_in_a_folder_are_refused(tmp_path):
    (tmp_path / "lab.yaml").write_bytes(LAB)
    (tmp_path / "images.yaml").symlink_to("/etc/hostname")
    with pytest.raises(LabFileError, match="not a regular file"):
        read_folder(tmp_path)
