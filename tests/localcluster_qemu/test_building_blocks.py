"""The qemu runtime's pure parts, as data: no QEMU needed."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from localcluster.demoimage import BuildError, module_load_order
from localcluster.desktopimage import (
    console_cpio_entry,
    elf_needed,
    library_closure,
    package_closure,
    parse_depends,
)
from localcluster.qemu.cloudinit import CloudInitError, nocloud_data
from localcluster.qemu.images import ImageNotFound, ImageStore, normalise_reference
from localcluster.qemu.png import ppm_to_png
from localcluster.qemu.process import Drive, Machine, qemu_command
from localcluster.runtimes.qemu import LaunchError, guest_cores, guest_memory_mib, vmi_tablets
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import demo_vmi, png_colours


def _pairs(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, part in enumerate(cmd) if part == flag]


def test_kernel_machine_command_line(tmp_path: Path) -> None:
    machine = Machine(
        name="lab-1/vm1",
        accel="tcg",
        cores=2,
        memory_mib=256,
        qmp=tmp_path / "qmp",
        serial=tmp_path / "serial",
        vnc=tmp_path / "vnc",
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        cmdline="console=ttyS0 quiet lab.ip=10.244.0.2/24",
        switch=tmp_path / "net1",
        mac="52:54:00:f4:00:02",
    )
    cmd = qemu_command("qemu-system-x86_64", machine)
    assert _pairs(cmd, "-accel") == ["tcg"] and "-cpu" not in cmd
    assert _pairs(cmd, "-smp") == ["2"] and _pairs(cmd, "-m") == ["256"]
    assert {"-nodefaults", "-no-reboot"} <= set(cmd) and _pairs(cmd, "-display") == ["none"]
    assert _pairs(cmd, "-vnc") == [f"unix:{tmp_path / 'vnc'}"]
    assert _pairs(cmd, "-chardev") == [f"socket,id=ser0,path={tmp_path / 'serial'},server=on,wait=off"]
    assert _pairs(cmd, "-append") == ["console=ttyS0 quiet lab.ip=10.244.0.2/24"]
    assert _pairs(cmd, "-netdev") == [f"vde,id=net0,sock={tmp_path / 'net1'}"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:f4:00:02,romfile=" in _pairs(cmd, "-device")


def test_disk_machine_without_screen_or_console(tmp_path: Path) -> None:
    machine = Machine(
        name="lab-1/vm2",
        accel="kvm",
        cores=1,
        memory_mib=512,
        qmp=tmp_path / "qmp",
        drives=(
            Drive(tmp_path / "disk0.qcow2", "qcow2", boot_index=1),
            Drive(tmp_path / "cidata.iso", "raw", bus="sata", cdrom=True),
        ),
    )
    cmd = qemu_command("qemu-system-x86_64", machine)
    assert _pairs(cmd, "-cpu") == ["host"]
    assert "-vnc" not in cmd and "-vga" not in cmd and "-serial" not in cmd and "-kernel" not in cmd
    assert _pairs(cmd, "-drive") == [
        f"if=none,id=drive0,file={tmp_path / 'disk0.qcow2'},format=qcow2",
        f"if=none,id=drive1,file={tmp_path / 'cidata.iso'},format=raw,readonly=on",
    ]
    assert _pairs(cmd, "-device") == ["virtio-blk-pci,drive=drive0,bootindex=1", "ide-cd,drive=drive1"]


def test_tablets_as_kubevirt_attaches_them(tmp_path: Path) -> None:
    """A USB tablet hangs off one xHCI controller (as libvirt gives KubeVirt's `bus: usb`), a virtio
    one is its own PCI device: the VNC pointer is then absolute, so it lands where the user clicks."""
    machine = Machine(
        name="lab-1/desk",
        accel="tcg",
        cores=1,
        memory_mib=256,
        qmp=tmp_path / "qmp",
        vnc=tmp_path / "vnc",
        tablets=("usb", "virtio", "usb"),
    )
    devices = _pairs(qemu_command("qemu-system-x86_64", machine), "-device")
    assert devices == [
        "qemu-xhci,id=usb",
        "usb-tablet,bus=usb.0,id=input0",
        "virtio-tablet-pci,id=input1",
        "usb-tablet,bus=usb.0,id=input2",
    ]


def test_vmi_inputs_become_tablets() -> None:
    vmi = demo_vmi("desk")
    assert vmi_tablets(vmi["spec"]) == ()
    vmi["spec"]["domain"]["devices"]["inputs"] = [
        {"name": "pointer", "type": "tablet", "bus": "usb"},
        {"name": "fast", "type": "tablet", "bus": "virtio"},
    ]
    assert vmi_tablets(vmi["spec"]) == ("usb", "virtio")


def _image(root: Path, folder: str, meta: dict[str, str], files: tuple[str, ...]) -> None:
    (root / folder).mkdir(parents=True)
    for name in files:
        (root / folder / name).write_bytes(b"x")
    (root / folder / "image.json").write_text(json.dumps(meta))


def test_image_store_resolves_references_like_a_container_runtime(tmp_path: Path) -> None:
    _image(
        tmp_path,
        "demo",
        {"reference": "localcluster/demo:latest", "kernel": "vmlinuz", "initrd": "initrd.img"},
        ("vmlinuz", "initrd.img"),
    )
    _image(
        tmp_path,
        "cirros",
        {"reference": "docker.io/library/cirros:0.6", "disk": "disk.img", "format": "raw"},
        ("disk.img",),
    )
    _image(tmp_path, "broken", {"reference": "broken:1", "disk": "missing.qcow2"}, ())
    store = ImageStore(tmp_path)
    assert store.resolve("localcluster/demo").kernel == tmp_path / "demo" / "vmlinuz"
    cirros = store.resolve("cirros:0.6")
    assert (cirros.disk, cirros.disk_format) == (tmp_path / "cirros" / "disk.img", "raw")
    assert normalise_reference("docker.io/library/busybox") == "busybox:latest"
    assert normalise_reference("quay.io:443/kubevirt/cirros") == "quay.io:443/kubevirt/cirros:latest"
    with pytest.raises(ImageNotFound) as failure:
        store.resolve("broken:1")
    assert str(failure.value) == "image not found: broken:1; available: cirros:0.6, localcluster/demo:latest"


def test_empty_store_says_how_to_get_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="build-image"):
        ImageStore(tmp_path / "nothing").resolve("localcluster/demo:latest")


def test_nocloud_from_inline_user_data_and_from_a_secret() -> None:
    vmi = demo_vmi("vm1", user_data="#cloud-config\npassword: a\n") | {}
    vmi["metadata"]["namespace"] = "lab-1"
    inline = nocloud_data(vmi, {"userData": "#cloud-config\npassword: a\n"}, lambda _ns, _n: None)
    assert inline.user_data == "#cloud-config\npassword: a\n"
    assert inline.meta_data == "instance-id: vm1.lab-1\nlocal-hostname: vm1\n"

    secrets = {
        ("lab-1", "vm1-userdata"): {"data": {"userdata": base64.b64encode(b"#cloud-config\n").decode()}}
    }
    from_secret = nocloud_data(
        vmi, {"secretRef": {"name": "vm1-userdata"}}, lambda ns, name: secrets.get((ns, name))
    )
    assert from_secret.user_data == "#cloud-config\n"
    with pytest.raises(CloudInitError, match='secret "gone" not found'):
        nocloud_data(vmi, {"userDataSecretRef": {"name": "gone"}}, lambda _ns, _n: None)


def test_guest_size_from_the_vmi() -> None:
    spec = demo_vmi("vm1", memory="1Gi")["spec"]
    assert guest_memory_mib(spec) == 1024
    spec["domain"]["cpu"] = {"cores": 2, "sockets": 2}
    assert guest_cores(spec) == 4
    del spec["domain"]["memory"], spec["domain"]["resources"]
    with pytest.raises(LaunchError, match="no memory requested"):
        guest_memory_mib(spec)


def test_ppm_screendump_becomes_a_png_with_the_same_pixels() -> None:
    pixels = bytes([0, 0, 0, 255, 255, 255, 10, 20, 30, 0, 0, 0])
    png = ppm_to_png(b"P6\n2 2\n255\n" + pixels)
    assert png_colours(png) == {(0, 0, 0), (255, 255, 255), (10, 20, 30)}


def test_demo_image_modules_load_after_their_dependencies(tmp_path: Path) -> None:
    def module(name: str, depends: str) -> Path:
        path = tmp_path / f"{name}.ko"
        path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=6.1\0")
        return path

    available = {
        "virtio_ring": module("virtio_ring", ""),
        "virtio": module("virtio", "virtio_ring"),
        "failover": module("failover", ""),
        "net_failover": module("net_failover", "failover"),
        "virtio_net": module("virtio_net", "net_failover,virtio,virtio_ring"),
    }
    order = [name for name, _ in module_load_order(("virtio_net",), available)]
    assert order == ["failover", "net_failover", "virtio_ring", "virtio", "virtio_net"]
    with pytest.raises(BuildError, match="lacks module bochs"):
        module_load_order(("bochs",), available)


APT_CACHE_DEPENDS = """xterm
  Depends: xbitmaps
  Depends: libc6
 |Depends: libxft2
  Depends: <libxft-virtual>
  Depends: libx11-6
  PreDepends: libtinfo6
  Recommends: xfonts-base
libx11-6
  Depends: libc6
  Depends: libx11-data
"""


def test_apt_cache_depends_output_becomes_hard_dependencies_first_alternative_only() -> None:
    assert parse_depends(APT_CACHE_DEPENDS) == {
        "xterm": ["xbitmaps", "libc6", "libxft2", "libx11-6", "libtinfo6"],
        "libx11-6": ["libc6", "libx11-data"],
    }


def test_package_closure_follows_libraries_and_listed_data_only() -> None:
    graph = {
        "xterm": ["xbitmaps", "libx11-6", "debconf"],
        "libx11-6": ["libc6", "libx11-data"],
        "libc6": ["libgcc-s1", "gcc-12-base"],
        "libgcc-s1": ["libc6"],
        "libx11-data": [],
    }
    asked: list[list[str]] = []

    def depends_of(names: list[str]) -> dict[str, list[str]]:
        asked.append(names)
        return {name: graph.get(name, []) for name in names}

    assert package_closure(["xterm"], depends_of) == [
        "libc6",
        "libgcc-s1",
        "libx11-6",
        "libx11-data",
        "xterm",
    ]
    assert len(asked) == 4, "one apt-cache call per level, each package asked once"


def _host_elf(name: str) -> Path:
    path = Path("/usr/bin") / name
    if not path.exists():
        pytest.skip(f"no {path} on this machine")
    return path.resolve()


def test_elf_needed_reads_the_dynamic_section() -> None:
    assert "libc.so.6" in elf_needed(_host_elf("env").read_bytes())
    assert elf_needed(b"#!/bin/sh\n") == []


def test_library_closure_takes_what_is_linked_and_names_what_is_missing(tmp_path: Path) -> None:
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    loader = Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    if not (libc.exists() and loader.exists()):
        pytest.skip("not a Debian amd64 machine")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/bin/env").write_bytes(_host_elf("env").read_bytes())
    (tmp_path / "usr/bin/not-a-program").write_text("data")
    (tmp_path / "lib/x86_64-linux-gnu/libc.so.6").write_bytes(libc.read_bytes())
    (tmp_path / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(loader.read_bytes())
    assert library_closure(tmp_path, ["usr/bin/env", "usr/bin/not-a-program"]) == [
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "usr/bin/env",
        "usr/bin/not-a-program",
    ]
    (tmp_path / "lib/x86_64-linux-gnu/libc.so.6").unlink()
    with pytest.raises(BuildError, match=r"no package provides libc\.so\.6"):
        library_closure(tmp_path, ["usr/bin/env"])


def test_console_node_archive_is_a_valid_newc_cpio(tmp_path: Path) -> None:
    """The device node the kernel needs before /init, written without root (cpio lists it)."""
    archive = console_cpio_entry()
    assert len(archive) % 512 == 0
    cpio = require_tool("cpio", "cpio")
    listing = subprocess.run(
        [cpio, "-itv", "--quiet"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    assert re.search(r"^d\S+ .* dev$", listing, re.M), listing
    assert re.search(r"^c\S+ .* 5,\s*1 .* dev/console$", listing, re.M), listing
