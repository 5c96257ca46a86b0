"""Build the demo VM image: Debian's kernel plus a busybox initramfs, registered in an image store.

`python -m localcluster build-image --output DIR` writes `DIR/localcluster-demo/` (see
`localcluster.qemu.images` for the store layout) under the reference `localcluster/demo:latest`.
Everything comes from Debian packages: the kernel is fetched with `apt-get download` (the version the
`linux-image-amd64` metapackage points at) and unpacked with `dpkg -x`; busybox is the host's static
busybox. The build is idempotent (a finished image is left alone unless its recipe changed) and the
kernel package is cached under `DIR/.cache`, so a second build is instant and offline.

The kernel is stored uncompressed (`vmlinux`, booted through its PVH entry point) when possible: that
saves ~10 s of firmware and decompression per boot under TCG, for ~60 MB of disk.

What the VM does when it boots (the `/init` script below):
- loads the virtio, ISO 9660 and display (bochs DRM) modules, each after its dependencies;
- takes its address, router, DNS server, search path and host name by DHCP on eth0 (busybox's
  `udhcpc`), as a cloud image does; the lab network's DHCP server knows its MAC;
- if a cloud-init NoCloud disk (`cidata`) is attached, sets the `password:` from its user-data for the
  users `lab` and `root` (so `login lab` / `su lab` work as on a cloud image);
- runs an SSH server (Debian's dropbear, copied in with the libraries it links) for step checks: the
  host key is cloud-init's `ssh_keys.ed25519_private` (converted with dropbearconvert), and every
  `users` entry with `ssh_authorized_keys` becomes a user who may log in with those keys, with uid 0
  (the image has no sudo; cloud-init would give the check user passwordless sudo). Key login only;
- prints a banner and runs a root shell on the serial console (what the console websocket shows) and
  another on the screen (tty1, what VNC shows). A root shell without a login prompt is deliberate:
  the demo is about the lab network, and a student should be typing within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

DEMO_REFERENCE = "localcluster/demo:latest"
DEMO_DIRNAME = "localcluster-demo"
BANNER = "Welcome to Lab Orchestrator demo VM"

# What the guest needs, by purpose; each module's own dependencies (read from its .modinfo) are added
# and everything is loaded dependencies first, e.g. virtio_ring before virtio (LOCALVM.md's order).
MODULES = (
    "virtio_pci",  # the PCI transport of every virtio device
    "virtio_net",  # eth0 on the lab switch
    "virtio_blk",  # the cloud-init disk...
    "isofs",  # ...which is ISO 9660
    # The screen (VNC): a PVH-booted kernel has no VGA text console, so drive QEMU's std VGA with its
    # DRM driver; fbcon (built in) then shows tty1 on it.
    "bochs",
)

INIT_SCRIPT = r"""#!/bin/busybox sh
# Lab Orchestrator demo VM: PID 1 of a busybox initramfs. Built by localcluster/demoimage.py.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /tmp /root /mnt/cidata
mount -t devpts devpts /dev/pts
for m in __MODULES__; do insmod /lib/modules/$m.ko 2>/dev/null; done

hostname lab-vm
ip link set lo up
# virtio_net registers eth0 asynchronously after insmod; wait briefly for it.
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
if [ -e /sys/class/net/eth0 ]; then
    # Address, router, DNS, search path and host name by DHCP (/etc/udhcpc.script applies them).
    udhcpc -i eth0 -s /etc/udhcpc.script -O search -O mtu -t 30 -T 1 -n -q >/dev/null 2>&1
fi
HN=$(hostname)
echo "127.0.0.1 localhost $HN" > /etc/hosts
IP=$(ip -4 -o addr show dev eth0 2>/dev/null | sed -n 's/.* inet \([^ ]*\).*/\1/p' | head -n 1)

# cloud-init NoCloud: the runtime attaches a cidata ISO as a virtio disk.
PASSWORD_NOTE="no password set (no cloud-init disk)"
# virtio_blk probes disks asynchronously: when a virtio block device (id 0x0002) exists, wait for its node.
if grep -qs 0x0002 /sys/bus/virtio/devices/*/device; then
    for i in $(seq 25); do ls /dev/vd* >/dev/null 2>&1 && break; sleep 0.2; done
fi
for dev in /dev/vd*; do
    [ -b "$dev" ] || continue
    if mount -t iso9660 -o ro "$dev" /mnt/cidata 2>/dev/null; then
        if [ -f /mnt/cidata/user-data ]; then
            cp /mnt/cidata/user-data /tmp/user-data
            PW=$(sed -n 's/^password:[[:space:]]*//p' /mnt/cidata/user-data | head -n 1 | tr -d "\"'\r")
            if [ -n "$PW" ]; then
                # Debian's static busybox has mkpasswd but no chpasswd: write the shadow entries.
                HASH=$(mkpasswd -m sha512 "$PW")
                sed -i "s|^root:[^:]*:|root:$HASH:|; s|^lab:[^:]*:|lab:$HASH:|" /etc/shadow
                PASSWORD_NOTE="password for users root and lab set by cloud-init"
            fi
        fi
        umount /mnt/cidata
    fi
done

# SSH for step checks: cloud-init's host key and users with their keys (see the module comment).
mkdir -p /etc/dropbear /var/run
if [ -f /tmp/user-data ]; then
    awk -f /etc/cloud-ssh.awk /tmp/user-data > /tmp/cloud-ssh
    sed -n 's/^hostkey //p' /tmp/cloud-ssh > /tmp/host.openssh
    if [ -s /tmp/host.openssh ]; then
        dropbearconvert openssh dropbear /tmp/host.openssh /etc/dropbear/dropbear_ed25519_host_key \
            >/dev/null 2>&1
    fi
    rm -f /tmp/host.openssh
    for user in $(sed -n 's/^user //p' /tmp/cloud-ssh); do
        grep -q "^$user:" /etc/passwd || {
            echo "$user:x:0:0:$user:/home/$user:/bin/sh" >> /etc/passwd
            echo "$user:*:19000:0:99999:7:::" >> /etc/shadow
        }
        mkdir -p "/home/$user/.ssh"
        sed -n "s/^key $user //p" /tmp/cloud-ssh > "/home/$user/.ssh/authorized_keys"
        chmod 700 "/home/$user/.ssh"; chmod 600 "/home/$user/.ssh/authorized_keys"
    done
    rm -f /tmp/cloud-ssh /tmp/user-data
fi
(
    while true; do
        # -R: make a host key if cloud-init gave none; -s -g: keys only, never a password.
        dropbear -F -E -R -s -g -p 22 >/dev/null 2>&1
        sleep 1
    done
) &

ADDR="${IP%/*}"
[ -n "$ADDR" ] || ADDR="no address"
banner() {
    echo
    echo "__BANNER__ $HN ($ADDR)"
    echo "Root shell on this console; $PASSWORD_NOTE."
    echo "Try: ip addr show eth0, ping <other machine>"
    echo
}
# Respawn a root shell on each console; setsid -c makes it the controlling tty so ^C works.
console_shell() {
    while true; do
        # The screen still shows firmware messages: start it clean (serial output is left alone).
        [ "$1" = /dev/tty1 ] && printf '\033[2J\033[H' > "$1"
        banner > "$1"
        setsid -c sh -l <>"$1" >&0 2>&1
        sleep 1
    done
}
console_shell /dev/ttyS0 &
console_shell /dev/tty1 &
while true; do sleep 3600; done
"""

# Reads the #cloud-config Lab Orchestrator writes (labs/manifests.py: one key per line, keys as
# literal blocks): prints "user NAME", "key NAME LINE" and "hostkey LINE" for the init script.
CLOUD_SSH_AWK = r"""
/^[^ -]/ { section = $0; sub(/:.*/, "", section); inkeys = 0; inhost = 0 }
section == "users" && /^- name: / { user = $3; print "user " user; inkeys = 0; next }
section == "users" && /^  ssh_authorized_keys:/ { inkeys = 1; next }
section == "users" && inkeys && /^  - / {
    line = $0; sub(/^  - /, "", line); print "key " user " " line; next
}
section == "users" && /^  [a-z_]+:/ { inkeys = 0 }
section == "ssh_keys" && /^  ed25519_private: *\|/ { inhost = 1; next }
section == "ssh_keys" && inhost && /^    / { line = $0; sub(/^    /, "", line); print "hostkey " line; next }
section == "ssh_keys" && /^  [a-z_]+:/ { inhost = 0 }
"""
# Dropbear and dropbearconvert from Debian's dropbear-bin, with the libraries they link.
DROPBEAR_BINARIES = ("dropbear", "dropbearconvert")

PROFILE = r"""export PATH=/bin:/sbin HOME=/root
PS1='\u@\h:\w\$ '
"""
# udhcpc runs this with the lease in its environment (busybox's udhcpc: $ip, $mask as a prefix
# length, $router, $dns, $search from option 119, $domain, $hostname, $mtu).
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        for gateway in $router; do ip route add default via "$gateway" dev "$interface"; break; done
        [ -n "$hostname" ] && hostname "$hostname" && echo "$hostname" > /etc/hostname
        : > /etc/resolv.conf
        [ -n "$search$domain" ] && echo "search ${search:-$domain}" >> /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        ;;
esac
exit 0
"""
PASSWD = "root:x:0:0:root:/root:/bin/sh\nlab:x:1000:1000:lab:/home/lab:/bin/sh\n"
SHADOW = "root:*:19000:0:99999:7:::\nlab:*:19000:0:99999:7:::\n"
GROUP = "root:x:0:\nlab:x:1000:\n"

# Anything that changes the built image bumps the recipe hash, so an old build is replaced.
RECIPE_VERSION = hashlib.sha256(
    "\0".join(
        (
            INIT_SCRIPT,
            PROFILE,
            UDHCPC_SCRIPT,
            PASSWD,
            SHADOW,
            GROUP,
            CLOUD_SSH_AWK,
            *MODULES,
            *DROPBEAR_BINARIES,
            "pvh-vmlinux",
            "modinfo-deps",
        )
    ).encode()
).hexdigest()[:16]


class BuildError(Exception):
    """The demo image cannot be built here; the message says what to install or fix."""


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        # Fixed tool names with arguments we built; no shell.
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise BuildError(f"{cmd[0]} not found") from exc
    if result.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def kernel_package_name() -> str:
    """`linux-image-6.1.0-N-amd64`: the package Debian's `linux-image-amd64` currently depends on."""
    out = run(["apt-cache", "depends", "linux-image-amd64"])
    match = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*)", out)
    if not match:
        raise BuildError("cannot tell which kernel linux-image-amd64 depends on; run `apt-get update` first")
    return match.group(1)


def fetch_kernel_deb(cache: Path) -> Path:
    """Download the kernel package into `cache` unless a copy is already there."""
    cached = sorted(cache.glob("linux-image-[0-9]*.deb"))
    try:
        package = kernel_package_name()
    except BuildError:
        if cached:  # offline or no apt lists: a cached kernel is good enough
            return cached[-1]
        raise
    for deb in cached:
        if deb.name.startswith(package + "_"):
            return deb
    cache.mkdir(parents=True, exist_ok=True)
    # apt drops privileges to `_apt` for downloads; a world-writable temp dir keeps it quiet.
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o777)  # noqa: S103 - a private temp dir under our cache, removed right after
        run(["apt-get", "download", "-q", package], cwd=Path(tmp))
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise BuildError(f"apt-get download {package} produced no .deb")
        for old in cached:
            old.unlink()
        target = cache / debs[0].name
        shutil.move(str(debs[0]), target)
    return target


def extract_kernel(
    deb: Path, workdir: Path, modules: tuple[str, ...] = MODULES
) -> tuple[Path, list[tuple[str, Path]]]:
    """Unpack the kernel package; return vmlinuz and `modules` with their dependencies, in load order."""
    run(["dpkg-deb", "-x", str(deb), str(workdir)])
    vmlinuz = sorted((workdir / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise BuildError(f"{deb.name} holds no boot/vmlinuz-*")
    available = {
        path.name.split(".ko")[0].replace("-", "_"): path
        for path in (workdir / "lib" / "modules").rglob("*.ko*")
    }
    return vmlinuz[-1], module_load_order(modules, available)


def module_dependencies(module: bytes) -> list[str]:
    """The `depends=` list of a module's .modinfo (what depmod would put in modules.dep)."""
    start = module.find(b"\0depends=")
    if start < 0:
        return []
    value = module[start + len(b"\0depends=") : module.index(b"\0", start + 1)].decode()
    return [name.replace("-", "_") for name in value.split(",") if name]


def module_load_order(wanted: tuple[str, ...], available: dict[str, Path]) -> list[tuple[str, Path]]:
    """`wanted` plus everything they depend on, each after its dependencies.

    Debian's package ships no modules.dep (depmod makes it at install), so the dependencies come from
    the modules themselves. Modules built into the kernel are simply not found, and not needed.
    """
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, needed_by: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = available.get(name)
        if path is None:
            raise BuildError(f"the kernel lacks module {name} (needed by {needed_by})")
        for dependency in module_dependencies(read_module(path)):
            visit(dependency, name)
        order.append((name, path))

    for name in wanted:
        visit(name, "the demo image")
    return order


def pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed kernel inside a bzImage, if it can boot directly (PVH); else None.

    Under TCG, SeaBIOS plus the kernel decompressing itself take ~10 s before the first kernel line;
    QEMU boots an ELF kernel carrying the PVH entry note directly, in under a second. Debian's kernels
    are xz-compressed and built with CONFIG_PVH, so the builder unpacks them once here.
    """
    for magic, decompress in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor), (b"\x1f\x8b\x08", None)):
        start = bzimage.find(magic)
        if start < 0:
            continue
        try:
            if decompress is not None:
                elf = decompress().decompress(bzimage[start:])
            else:
                elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[start:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf.startswith(b"\x7fELF") and has_pvh_note(elf):
            return elf
    return None


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit ELF has Xen's PHYS32_ENTRY note (type 18), which QEMU needs to boot it as PVH."""
    if elf[4] != 2:  # ELFCLASS64
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def read_module(path: Path) -> bytes:
    """Module bytes, decompressed: busybox's insmod cannot read compressed modules."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise BuildError(f"{path.name} is zstd-compressed; unsupported")
    return data


class CpioWriter:
    """Writes the `newc` cpio format the kernel unpacks as an initramfs (all files owned by root)."""

    def __init__(self, out: io.BufferedIOBase) -> None:
        self._out = out
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._out.write(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        # The rdev fields sit at positions 9 and 10 of the header; write them directly.
        encoded = name.encode() + b"\0"
        fields = (self._ino, 0o020600, 0, 0, 1, 0, 0, 0, 0, major, minor, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))

    def close(self) -> None:
        self._entry("TRAILER!!!", 0, nlink=1)


def find_static_busybox() -> Path:
    """The host's busybox, if statically linked (a dynamic one would need its libc in the initramfs)."""
    path = shutil.which("busybox")
    # A dynamically linked ELF names its loader (PT_INTERP) near the start of the file.
    if not path or b"ld-linux" in Path(path).read_bytes()[:4096]:
        raise BuildError("needs a static busybox: apt-get install busybox-static")
    return Path(path)


def dropbear_files() -> list[Path]:
    """Dropbear's binaries and every shared library they load (ldd), at their paths on this host."""
    binaries = []
    for name in DROPBEAR_BINARIES:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        if path is None:
            raise BuildError(f"needs {name}: apt-get install dropbear-bin")
        binaries.append(Path(path))
    libraries: set[Path] = set()
    for binary in binaries:
        for line in run(["ldd", str(binary)]).splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                libraries.add(Path(match.group(1)))
    return binaries + sorted(libraries)


def build_initramfs(busybox: Path, modules: list[tuple[str, Path]], extra_files: list[Path] = ()) -> bytes:
    raw = io.BytesIO()
    cpio = CpioWriter(raw)
    for d in (
        "bin",
        "sbin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
        "root",
        "mnt",
        "home",
        "home/lab",
    ):
        cpio.directory(d)
    # The kernel opens /dev/console before running /init, before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    names = " ".join(name for name, _ in modules)
    init = INIT_SCRIPT.replace("__MODULES__", names).replace("__BANNER__", BANNER)
    cpio.file("init", init.encode(), 0o755)
    cpio.file("etc/profile", PROFILE.encode())
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("etc/passwd", PASSWD.encode())
    cpio.file("etc/shadow", SHADOW.encode(), 0o600)
    cpio.file("etc/group", GROUP.encode())
    for name, path in modules:
        cpio.file(f"lib/modules/{name}.ko", read_module(path))
    cpio.file("etc/cloud-ssh.awk", CLOUD_SSH_AWK.encode())
    cpio.file("etc/shells", b"/bin/sh\n")
    made = {"bin", "sbin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "root", "mnt", "home"}
    for path in extra_files:
        # Resolved, so a library reached through a symlink (/lib -> usr/lib) lands at its own name too.
        inside = str(path).lstrip("/")
        parts = inside.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in made:
                cpio.directory(folder)
                made.add(folder)
        cpio.file(inside, path.resolve().read_bytes(), 0o755)
    cpio.close()
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


@contextlib.contextmanager
def build_lock(output: Path) -> Iterator[None]:
    """Serialise builds into one store (two test sessions may start at once)."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_demo_image(output: Path, cache: Path | None = None, log=print) -> Path:
    """Build (or keep) the demo image in the store at `output`; return its directory."""
    output = Path(output)
    target = output / DEMO_DIRNAME
    with build_lock(output):
        manifest = target / "image.json"
        if manifest.exists():
            with contextlib.suppress(ValueError, OSError):
                if json.loads(manifest.read_text()).get("recipe") == RECIPE_VERSION:
                    log(f"demo image up to date: {target}")
                    return target
        busybox = find_static_busybox()
        cache = cache or output / ".cache"
        log("fetching the Debian kernel package (cached after the first build)...")
        deb = fetch_kernel_deb(cache)
        with tempfile.TemporaryDirectory(dir=output) as tmp:
            log(f"unpacking {deb.name}...")
            vmlinuz, modules = extract_kernel(deb, Path(tmp) / "kernel")
            initrd = build_initramfs(Path(busybox), modules, dropbear_files())
            staging = Path(tmp) / DEMO_DIRNAME
            staging.mkdir()
            vmlinux = pvh_vmlinux(vmlinuz.read_bytes())
            kernel_name = "vmlinux" if vmlinux is not None else "vmlinuz"
            if vmlinux is not None:
                (staging / kernel_name).write_bytes(vmlinux)
            else:  # boots too, just ~10 s slower under TCG
                shutil.copyfile(vmlinuz, staging / kernel_name)
            (staging / "initrd.img").write_bytes(initrd)
            (staging / "image.json").write_text(
                json.dumps(
                    {
                        "reference": DEMO_REFERENCE,
                        "kernel": kernel_name,
                        "initrd": "initrd.img",
                        "description": f"Lab Orchestrator demo VM (busybox, {deb.name.split('_')[0]})",
                        "recipe": RECIPE_VERSION,
                    },
                    indent=2,
                )
                + "\n"
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        log(f"built {DEMO_REFERENCE} in {target}")
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster build-image", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output", required=True, type=Path, help="image store directory (the --images DIR)")
    parser.add_argument("--cache", type=Path, help="where to keep the kernel .deb (default OUTPUT/.cache)")
    args = parser.parse_args(argv)
    try:
        build_demo_image(args.output, args.cache)
    except BuildError as exc:
        print(f"build-image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
