"""Build a Debian cloud-style disk image, as distributions build theirs: debootstrap, a kernel,
cloud-init, a DHCP client and a bootloader, into a qcow2.

`python -m localcluster build-debian-image --output DIR` writes `DIR/debian-cloud/` (see
`localcluster.qemu.images`) under the reference `localcluster/debian-cloud:12`. No cloud image can be
downloaded here, so this is the stand-in for one: a stock Debian 12 (bookworm) that knows nothing
about Lab Orchestrator. It boots through GRUB from its own disk, takes its address by DHCP
(ifupdown and isc-dhcp-client, which cloud-init's network renderer drives on Debian 12, as on
Debian's own cloud images), and cloud-init's NoCloud data source reads the `cidata` disk: the
password of the default user `debian`, user data, the host name. Its console is the first serial
port (and the screen); it ends at a `login:` prompt.

Everything comes from Debian packages (deb.debian.org). Building needs root (debootstrap, a loop
device and mounts) and the host tools in `TOOLS`; it takes a few minutes and is cached: a finished
image is kept until its recipe (`RECIPE_VERSION`, everything below that shapes the image) changes,
and the downloaded packages are kept under `DIR/.cache`, so a rebuild downloads nothing new.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from localcluster.demoimage import BuildError, build_lock

REFERENCE = "localcluster/debian-cloud:12"
DIRNAME = "debian-cloud"
DEFAULT_USER = "debian"  # cloud-init's default user on Debian (system_info.default_user)
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DISK_SIZE = "2G"
ROOT_LABEL = "debian-root"

# What a Debian 12 generic cloud image has for booting, networking and cloud-init, nothing more.
PACKAGES = (
    "linux-image-cloud-amd64",  # Debian's kernel for virtual machines
    "grub-pc",  # BIOS bootloader (KubeVirt boots VMIs with SeaBIOS unless told otherwise)
    "systemd-sysv",
    "udev",
    "dbus",  # hostnamectl, which cloud-init uses to set the host name
    "cloud-init",
    "ifupdown",  # cloud-init's network renderer on Debian 12 (ENI)...
    "isc-dhcp-client",  # ...and its DHCP client
    "iproute2",
    "iputils-ping",
    "netbase",
    "procps",
    "sudo",  # cloud-init puts the default user in the sudo group
    "openssh-server",  # cloud-init makes its host keys; `ssh_pwauth` in the user data applies to it
)

# executable -> Debian package
TOOLS = {
    "debootstrap": "debootstrap",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "partx": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "fstrim": "util-linux",
    "qemu-img": "qemu-utils",
    "chroot": "coreutils",
    "blkid": "util-linux",
}

FILES = {
    "etc/fstab": f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n",
    # Debian's cloud images' GRUB settings: no menu, kernel messages on the screen and serial port.
    "etc/default/grub": (
        'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR="Debian"\n'
        'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
        'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0"\n'
        'GRUB_TERMINAL="console serial"\n'
        'GRUB_SERIAL_COMMAND="serial --speed=115200"\n'
        "GRUB_DISABLE_OS_PROBER=true\n"
    ),
    # cloud-init's ENI renderer writes interfaces.d/50-cloud-init; this file must source it.
    "etc/network/interfaces": "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    # KubeVirt gives NoCloud (or ConfigDrive); do not probe the metadata services of clouds.
    "etc/cloud/cloud.cfg.d/01-datasources.cfg": "datasource_list: [ NoCloud, None ]\n",
    "etc/hostname": "localhost\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
}

# Anything that changes the built image changes this, so an old build is replaced.
RECIPE_VERSION = hashlib.sha256(
    json.dumps([SUITE, MIRROR, DISK_SIZE, ROOT_LABEL, PACKAGES, FILES, "steps-2"]).encode()
).hexdigest()[:16]

Log = Callable[[str], None]


def missing_tools() -> list[str]:
    """Debian packages to install before building (empty when everything is there)."""
    return sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})


def run(cmd: list[str], *, log: Log | None = None, env: dict[str, str] | None = None) -> str:
    if log:
        log("$ " + " ".join(cmd))
    try:
        # Fixed tool names with arguments we built; no shell.
        result = subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
        )
    except FileNotFoundError as exc:
        raise BuildError(f"{cmd[0]} not found") from exc
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise BuildError(f"{' '.join(cmd)} failed ({result.returncode}): {output}")
    return result.stdout


@contextlib.contextmanager
def loop_device(disk: Path) -> Iterator[tuple[str, str]]:
    """The disk as a loop device with its partitions: (whole disk, first partition)."""
    device = run(["losetup", "--find", "--show", "--partscan", str(disk)]).strip()
    try:
        partition = f"{device}p1"
        deadline = time.monotonic() + 10
        while not Path(partition).exists():
            if time.monotonic() > deadline:
                raise BuildError(f"{partition} did not appear")
            # Without udev the partition's device node may need asking for.
            with contextlib.suppress(BuildError):
                run(["partx", "--add", device])
            time.sleep(0.2)
        yield device, partition
    finally:
        subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)  # noqa: S603, S607


@contextlib.contextmanager
def mounted(source: str, target: Path, *options: str) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", *options, source, str(target)])
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=False, capture_output=True)  # noqa: S603, S607


def chroot(root: Path, *cmd: str, log: Log) -> str:
    env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return run(["chroot", str(root), *cmd], log=log, env=env)


def install_system(root: Path, device: str, partition: str, cache: Path, log: Log) -> None:
    """debootstrap, packages, configuration and GRUB into the mounted root file system."""
    debs = cache / f"debian-{SUITE}-debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--cache-dir={debs.resolve()}",
            SUITE,
            str(root),
            MIRROR,
        ],
        log=log,
    )
    for relative, content in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    with contextlib.ExitStack() as stack:
        # Fresh instances, not bind mounts of the host's: unmounting them cannot touch the host's.
        for fs_type, where in (("proc", "proc"), ("sysfs", "sys"), ("devtmpfs", "dev")):
            stack.enter_context(mounted(fs_type, root / where, "-t", fs_type))
        # apt keeps what it downloads in the cache too, so a rebuild fetches nothing new.
        stack.enter_context(mounted(str(debs.resolve()), root / "var/cache/apt/archives", "--bind"))
        chroot(root, "apt-get", "update", "-q", log=log)
        chroot(root, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES, log=log)
        chroot(root, "grub-install", "--target=i386-pc", "--modules=part_msdos ext2", device, log=log)
        chroot(root, "update-grub", log=log)
    # Without udev in the chroot there is no /dev/disk/by-uuid, so grub-mkconfig names the build's
    # loop device as the root; the booted system must find its root by UUID, as an installed one does.
    uuid = run(["blkid", "--match-tag", "UUID", "--output", "value", partition]).strip()
    grub_cfg = root / "boot/grub/grub.cfg"
    grub_cfg.write_text(grub_cfg.read_text().replace(f"root={partition} ", f"root=UUID={uuid} "))
    if f"root=UUID={uuid} " not in grub_cfg.read_text():
        raise BuildError(f"grub.cfg names no root=UUID={uuid}")
    # First boot state, as a cloud image ships: no machine id, no cloud-init instance, no apt lists.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    shutil.rmtree(root / "var/lib/cloud", ignore_errors=True)
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    run(["fstrim", str(root)])  # freed blocks read as zeros, which the qcow2 leaves out


def build_debian_image(output: Path, cache: Path | None = None, log: Log = print) -> Path:
    """Build (or keep) the Debian cloud-style image in the store at `output`; return its directory."""
    output = Path(output)
    target = output / DIRNAME
    with build_lock(output):
        manifest = target / "image.json"
        if manifest.exists():
            with contextlib.suppress(ValueError, OSError):
                if json.loads(manifest.read_text()).get("recipe") == RECIPE_VERSION:
                    log(f"Debian cloud image up to date: {target}")
                    return target
        if os.geteuid() != 0:
            raise BuildError("building the Debian image needs root (debootstrap, a loop device, mounts)")
        missing = missing_tools()
        if missing:
            raise BuildError("needs system packages: apt-get install " + " ".join(missing))
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=output, prefix=".build-debian-") as tmp:
            raw = Path(tmp) / "disk.raw"
            run(["qemu-img", "create", "-q", "-f", "raw", str(raw), DISK_SIZE])
            subprocess.run(  # noqa: S603
                ["sfdisk", "--quiet", str(raw)],  # noqa: S607
                input="label: dos\nstart=2048, type=83, bootable\n",
                text=True,
                check=True,
                capture_output=True,
            )
            with loop_device(raw) as (device, partition):
                run(["mkfs.ext4", "-q", "-L", ROOT_LABEL, partition])
                root = Path(tmp) / "root"
                with mounted(partition, root):
                    install_system(root, device, partition, cache or output / ".cache", log)
            staging = Path(tmp) / DIRNAME
            staging.mkdir()
            run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staging / "disk.qcow2")], log=log)
            (staging / "image.json").write_text(
                json.dumps(
                    {
                        "reference": REFERENCE,
                        "disk": "disk.qcow2",
                        "format": "qcow2",
                        "description": f"Debian 12 cloud-style image (cloud-init; login user {DEFAULT_USER})",
                        "recipe": RECIPE_VERSION,
                        "build_seconds": round(time.monotonic() - started),
                    },
                    indent=2,
                )
                + "\n"
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        log(f"built {REFERENCE} in {target} in {time.monotonic() - started:.0f} s")
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster build-debian-image", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output", required=True, type=Path, help="image store directory (the --images DIR)")
    parser.add_argument("--cache", type=Path, help="downloaded packages (default OUTPUT/.cache)")
    args = parser.parse_args(argv)
    try:
        build_debian_image(args.output, args.cache)
    except BuildError as exc:
        print(f"build-debian-image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
