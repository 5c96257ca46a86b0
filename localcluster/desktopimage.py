"""Build the desktop demo VM image: Debian's kernel and an initramfs that boots to an X11 desktop.

`python -m localcluster build-desktop-image --output DIR` writes `DIR/localcluster-desktop/` under
the reference `localcluster/desktop:latest`, in the same store layout as the busybox demo image
(`localcluster.demoimage`): the same Debian kernel, booted directly through PVH, and an initramfs.

What is in it, all from Debian packages (downloaded with `apt-get download`, unpacked with `dpkg -x`,
cached under `DIR/.cache/desktop-debs`, so a rebuild is offline; delete that folder to take newer
package versions):
- Xorg with the modesetting driver on the bochs DRM device (QEMU's standard VGA), the evdev input
  driver, xkbcomp and the XKB data;
- Fluxbox as the window manager (a toolbar with the open windows and a clock; right-click on the
  desktop for a menu), xterm as the terminal, Dillo as the web browser;
- DejaVu fonts with a fontconfig cache made at build time;
- the static busybox of the demo image as the shell and userland.

Only the programs above, the shared libraries they need (read from their ELF `NEEDED` entries, so
nothing is guessed) and their data go into the image: a package's dependencies are downloaded, but
what nobody links is left out.

Why these choices (measured under TCG on a loaded 2-core machine, README "The desktop demo image"):
- an initramfs rather than a root disk: the image keeps the busybox demo's format and PVH boot (a
  BIOS boot from a disk costs ~10 s of firmware and kernel decompression under TCG), and an
  uncompressed cpio unpacks faster under TCG than a compressed one is decompressed;
- no systemd, udev or display manager: `/init` starts Xorg, the window manager and the programs
  itself, and writes Xorg's input devices into its configuration (Xorg without udev cannot find
  them on its own);
- Xorg rather than a kdrive server: Debian no longer ships Xfbdev; Xorg with modesetting and no
  glamor (no Mesa in the image) draws through a shadow framebuffer;
- Fluxbox rather than IceWM: IceWM links librsvg (and with it cairo, pango, GLib), ~15 MB more;
- Dillo: a real browser in ~2 MB, useful on a lab network (open another machine's web page).

The screen is 1024x768: in the browser the screen pane is about 800 px wide at 1440x900, so a
1024-wide desktop is shown at ~80 % and its 14-pixel text stays readable (see portal's noVNC view).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from localcluster.demoimage import (
    UDHCPC_SCRIPT,
    BuildError,
    build_lock,
    extract_kernel,
    fetch_kernel_deb,
    find_static_busybox,
    pvh_vmlinux,
    read_module,
    run,
)

DESKTOP_REFERENCE = "localcluster/desktop:latest"
DESKTOP_DIRNAME = "localcluster-desktop"
BANNER = "Welcome to Lab Orchestrator desktop VM"
# Printed on the serial console once the window manager and the first windows are up.
DESKTOP_READY = "Lab Orchestrator desktop is ready"
SCREEN_WIDTH, SCREEN_HEIGHT = 1024, 768

# Debian packages whose files we take; libraries they depend on are downloaded with them.
PACKAGES = (
    "xserver-xorg-core",
    "xserver-xorg-input-evdev",
    "x11-xkb-utils",  # xkbcomp, which Xorg runs to compile the keymap
    "xkb-data",
    "libx11-data",  # Xlib's locale tables (input methods, compose)
    "fluxbox",
    "xterm",
    "dillo",
    "fonts-dejavu-core",
    "fontconfig-config",
    "fontconfig",  # fc-cache, run at build time only
    "libc-bin",  # the C.UTF-8 locale
    "ncurses-base",  # terminfo for xterm
)
# Dependencies followed besides the libraries (`lib*`): none of the others (udev, debconf, perl,
# keyboard-configuration, menu, wget) is needed by what the image runs.
FOLLOWED_DEPENDENCIES = frozenset(
    {"zlib1g", "fonts-dejavu-core", "fontconfig-config", "libx11-data", "xkb-data"}
)

# Executables and loadable modules; everything they link comes with them.
PROGRAMS = (
    "usr/lib/xorg/Xorg",
    "usr/lib/xorg/modules/drivers/modesetting_drv.so",
    "usr/lib/xorg/modules/input/evdev_drv.so",
    "usr/lib/xorg/modules/libshadow.so",
    "usr/bin/xkbcomp",
    "usr/bin/fluxbox",
    "usr/bin/fbsetroot",
    "usr/bin/xterm",
    "usr/bin/dillo",
    # Dillo's plugin daemon and the plugins for local files (the welcome page), data: URLs,
    # bookmarks and cookies.
    "usr/libexec/dillo/dpid",
    "usr/lib/x86_64-linux-gnu/dillo/dpi/file/file.dpi",
    "usr/lib/x86_64-linux-gnu/dillo/dpi/datauri/datauri.filter.dpi",
    "usr/lib/x86_64-linux-gnu/dillo/dpi/bookmarks/bookmarks.dpi",
    "usr/lib/x86_64-linux-gnu/dillo/dpi/cookies/cookies.dpi",
)
# Data copied as they are (directories recursively).
DATA = (
    "usr/share/X11/xkb",
    "usr/share/X11/locale/locale.alias",
    "usr/share/X11/locale/locale.dir",
    "usr/share/X11/locale/compose.dir",
    "usr/share/X11/locale/C",
    "usr/share/X11/locale/en_US.UTF-8",
    "etc/X11/app-defaults",
    "usr/share/fonts/truetype/dejavu",
    "etc/fonts",
    "usr/share/fontconfig",
    "usr/lib/locale/C.utf8",
    "usr/share/fluxbox/styles",
    "usr/share/fluxbox/nls/C",
    "usr/share/fluxbox/nls/en_US.UTF-8",
    "etc/X11/fluxbox/window.menu",
    "etc/dillo",
    "lib/terminfo/x/xterm",
    "lib/terminfo/x/xterm-256color",
    "lib/terminfo/v/vt100",
    "lib/terminfo/d/dumb",
    "lib/terminfo/l/linux",
)
# Library directories of the image, in the dynamic loader's search order.
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
LOADER = "lib64/ld-linux-x86-64.so.2"

# Kernel modules (with their dependencies): the busybox demo's, plus input for X.
MODULES = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "isofs",
    "bochs",  # QEMU's std VGA as a DRM device: Xorg's modesetting driver draws on it
    "virtio_input",  # a virtio tablet (`inputs: [{type: tablet, bus: virtio}]`)
    "evdev",  # /dev/input/event*: what Xorg's evdev driver reads
    # A USB tablet (`bus: usb`, KubeVirt's default bus for inputs) on QEMU's xHCI controller.
    "xhci_pci",
    "usbhid",
    "hid_generic",
)

INIT_SCRIPT = r"""#!/bin/busybox sh
# Lab Orchestrator desktop VM: PID 1 of the initramfs. Built by localcluster/desktopimage.py.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /tmp /root /mnt/cidata /run /var/log /var/lib/xkb
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
chmod 1777 /tmp
# Seconds since the kernel started, at each step of the boot: `cat /run/boot-times`.
mark() { echo "$(cut -d' ' -f1 /proc/uptime) $*" >> /run/boot-times; }
mark init
for m in __MODULES__; do insmod /lib/modules/$m.ko 2>/dev/null; done
mark modules loaded

hostname lab-vm
ip link set lo up
# Address, router, DNS, search path and host name by DHCP (/etc/udhcpc.script applies them), in the
# background while the screen starts; network_up waits for it.
(
    # virtio_net registers eth0 asynchronously after insmod; wait briefly for it.
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
    [ -e /sys/class/net/eth0 ] && udhcpc -i eth0 -s /etc/udhcpc.script -O search -O mtu -t 30 -T 1 -n -q \
        >/dev/null 2>&1
    mark network configured
    touch /run/network-up
) &
network_up() { for i in $(seq 300); do [ -e /run/network-up ] && break; sleep 0.1; done; }

# The screen first: everything else can happen while X starts.
# Xorg without udev cannot discover input devices: list every event device in its configuration.
# The tablet is probed asynchronously after insmod; wait briefly for a pointer to appear.
for i in $(seq 20); do grep -qs mouse /proc/bus/input/devices && break; sleep 0.1; done
XCONF=/etc/X11/xorg.conf
cp /etc/X11/xorg.conf.in "$XCONF"
# The first device with keyboard LEDs is the core keyboard, the first with a mouse handler (the
# tablet) the core pointer; every other event device (power button, ...) is added as well.
LAYOUT=
KEYBOARD=
POINTER=
for handlers in $(sed -n 's/^H: Handlers=//p' /proc/bus/input/devices | tr ' ' ','); do
    n=$(echo "$handlers" | tr ',' '\n' | grep '^event')
    [ -n "$n" ] || continue
    role=SendCoreEvents
    case ",$handlers," in
        *,leds,*) [ -z "$KEYBOARD" ] && KEYBOARD=$n && role=CoreKeyboard ;;
        *,mouse[0-9]*) [ -z "$POINTER" ] && POINTER=$n && role=CorePointer ;;
    esac
    printf 'Section "InputDevice"\n  Identifier "%s"\n  Driver "evdev"\n' "$n" >> "$XCONF"
    printf '  Option "Device" "/dev/input/%s"\nEndSection\n' "$n" >> "$XCONF"
    LAYOUT="$LAYOUT  InputDevice \"$n\" \"$role\"\n"
done
printf 'Section "ServerLayout"\n  Identifier "layout"\n  Screen "screen"\n' >> "$XCONF"
printf '%bEndSection\n' "$LAYOUT" >> "$XCONF"
mark input devices found
printf '\033[2J\033[H\033[?25l' > /dev/tty1
Xorg :0 vt1 -keeptty -novtswitch -nolisten tcp -noreset -logfile /var/log/Xorg.0.log -config "$XCONF" \
    >/dev/null 2>&1 &
desktop() {
    for i in $(seq 300); do [ -S /tmp/.X11-unix/X0 ] && break; sleep 0.1; done
    mark X listening
    network_up
    HN=$(hostname)
    export DISPLAY=:0
    fbsetroot -gradient vertical -from '#2b5876' -to '#4e4376' 2>/dev/null
    fluxbox >/var/log/fluxbox.log 2>&1 &
    (cd /root && xterm -title "Terminal on $HN" -geometry 56x22+16+16 >/dev/null 2>&1 &)
    dillo -g 420x480+596+190 file:///usr/share/lab/welcome.html >/dev/null 2>&1 &
    sleep 1
    mark programs started
    echo "__READY__ ($HN)" > /dev/ttyS0
}
desktop &

network_up
HN=$(hostname)
echo "127.0.0.1 localhost $HN" > /etc/hosts
IP=$(ip -4 -o addr show dev eth0 2>/dev/null | sed -n 's/.* inet \([^ ]*\).*/\1/p' | head -n 1)

# cloud-init NoCloud: the runtime attaches a cidata ISO as a virtio disk.
PASSWORD_NOTE="no password set (no cloud-init disk)"
if grep -qs 0x0002 /sys/bus/virtio/devices/*/device; then
    for i in $(seq 25); do ls /dev/vd* >/dev/null 2>&1 && break; sleep 0.2; done
fi
for dev in /dev/vd*; do
    [ -b "$dev" ] || continue
    if mount -t iso9660 -o ro "$dev" /mnt/cidata 2>/dev/null; then
        if [ -f /mnt/cidata/user-data ]; then
            PW=$(sed -n 's/^password:[[:space:]]*//p' /mnt/cidata/user-data | head -n 1 | tr -d "\"'\r")
            if [ -n "$PW" ]; then
                HASH=$(mkpasswd -m sha512 "$PW")
                sed -i "s|^root:[^:]*:|root:$HASH:|; s|^lab:[^:]*:|lab:$HASH:|" /etc/shadow
                PASSWORD_NOTE="password for users root and lab set by cloud-init"
            fi
        fi
        umount /mnt/cidata
    fi
done

ADDR="${IP%/*}"
[ -n "$ADDR" ] || ADDR="no address"
echo "$HN ($ADDR)" > /etc/lab-address
banner() {
    echo
    echo "__BANNER__ $HN ($ADDR)"
    echo "Root shell on this console; $PASSWORD_NOTE. The screen shows an X11 desktop."
    echo
}
while true; do
    banner > /dev/ttyS0
    setsid -c sh -l <>/dev/ttyS0 >&0 2>&1
    sleep 1
done
"""

XORG_CONF = r"""# Written by localcluster/desktopimage.py; /init appends the input devices and the layout.
Section "ServerFlags"
  # No udev in the guest: the input devices are listed below instead.
  Option "AutoAddDevices" "false"
  Option "AutoAddGPU" "false"
  # A lab screen never blanks: a student comes back to it after reading the tutorial.
  Option "BlankTime" "0"
  Option "StandbyTime" "0"
  Option "SuspendTime" "0"
  Option "OffTime" "0"
  Option "DontVTSwitch" "true"
EndSection
Section "Module"
  Disable "glx"
  Disable "glamoregl"
EndSection
Section "Device"
  Identifier "vga"
  Driver "modesetting"
  Option "AccelMethod" "none"
EndSection
Section "Monitor"
  Identifier "monitor"
  Option "PreferredMode" "__MODE__"
EndSection
Section "Screen"
  Identifier "screen"
  Device "vga"
  Monitor "monitor"
  DefaultDepth 24
  SubSection "Display"
    Modes "__MODE__"
  EndSubSection
EndSection
"""

FLUXBOX_INIT = r"""session.configVersion: 13
session.screen0.toolbar.visible: true
session.screen0.toolbar.placement: BottomCenter
session.screen0.toolbar.widthPercent: 100
session.screen0.toolbar.height: 28
session.screen0.toolbar.tools: RootMenu, prevworkspace, workspacename, nextworkspace, iconbar, clock
session.screen0.workspaces: 1
session.screen0.workspaceNames: Lab desktop
session.screen0.iconbar.mode: {static groups} (workspace)
session.screen0.strftimeFormat: %H:%M
session.screen0.rootCommand:
session.screen0.defaultDeco: NORMAL
session.screen0.window.focus.alpha: 255
session.screen0.window.unfocus.alpha: 255
session.styleFile: /usr/share/fluxbox/styles/Emerge
session.menuFile: ~/.fluxbox/menu
session.keyFile: ~/.fluxbox/keys
session.appsFile: ~/.fluxbox/apps
session.slitlistFile: ~/.fluxbox/slitlist
session.styleOverlay: ~/.fluxbox/overlay
session.doubleClickInterval: 250
session.tabsAttachArea: Window
session.screen0.tabs.usePixmap: false
"""

# Larger fonts than the styles' defaults, so the desktop stays legible when scaled in the browser.
FLUXBOX_OVERLAY = r"""*.font: DejaVu Sans-11
toolbar.clock.font: DejaVu Sans-11:bold
window.font: DejaVu Sans-11:bold
menu.title.font: DejaVu Sans-11:bold
menu.frame.font: DejaVu Sans-11
"""

FLUXBOX_MENU = r"""[begin] (Lab desktop)
  [exec] (Terminal) {xterm}
  [exec] (Web browser) {dillo}
  [separator]
  [config] (Settings)
  [workspaces] (Windows)
  [separator]
  [restart] (Restart the window manager)
[end]
"""

FLUXBOX_KEYS = r"""OnDesktop Mouse1 :HideMenus
OnDesktop Mouse2 :WorkspaceMenu
OnDesktop Mouse3 :RootMenu
OnTitlebar Double Mouse1 :Maximize
OnTitlebar Mouse1 :StartMoving
OnWindow Mod1 Mouse1 :StartMoving
OnWindowBorder Move1 :StartMoving
OnLeftGrip Move1 :StartResizing bottomleft
OnRightGrip Move1 :StartResizing bottomright
OnWindow Mod1 Mouse3 :StartResizing NearestCorner
Mod1 Tab :NextWindow {groups} (workspace=[current])
Mod1 F4 :Close
"""

XRESOURCES = r"""XTerm*faceName: DejaVu Sans Mono
XTerm*faceSize: 12
XTerm*background: #fdf6e3
XTerm*foreground: #073642
XTerm*cursorColor: #cb4b16
XTerm*scrollBar: true
XTerm*rightScrollBar: true
XTerm*saveLines: 2000
XTerm*selectToClipboard: true
XTerm*loginShell: true
XTerm*termName: xterm-256color
Xft.dpi: 96
Xft.antialias: true
Xft.hinting: true
Xft.hintstyle: hintslight
Xft.rgba: none
"""

DILLORC = r"""# Written by localcluster/desktopimage.py.
start_page="file:///usr/share/lab/welcome.html"
home="file:///usr/share/lab/welcome.html"
font_factor=1.15
font_sans_serif="DejaVu Sans"
font_serif="DejaVu Serif"
font_monospace="DejaVu Sans Mono"
show_msg=NO
http_user_agent="Dillo/3.0.5 (Lab Orchestrator desktop)"
"""

WELCOME_HTML = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Lab desktop</title></head>
<body bgcolor="#ffffff">
<h2>Lab Orchestrator desktop</h2>
<p>This is a real X11 desktop running in your lab's virtual machine.</p>
<ul>
<li><b>Terminal</b>: the xterm window; a new one from the menu (right-click the desktop).</li>
<li><b>Browser</b>: this window (Dillo). Press Ctrl+L to select the address bar, type the address
of a web server of your lab network (your tutorial says which) and press Enter.</li>
<li><b>Windows</b>: drag a title bar to move a window; the bar at the bottom lists them.</li>
</ul>
</body></html>
"""

PROFILE = r"""export PATH=/usr/bin:/bin:/sbin HOME=/root LANG=C.UTF-8 DISPLAY=:0
PS1='\u@\h:\w\$ '
"""
PASSWD = "root:x:0:0:root:/root:/bin/sh\nlab:x:1000:1000:lab:/home/lab:/bin/sh\n"
SHADOW = "root:*:19000:0:99999:7:::\nlab:*:19000:0:99999:7:::\n"
GROUP = "root:x:0:\nvideo:x:44:\ninput:x:101:\nlab:x:1000:\n"

# Anything that changes the built image bumps the recipe hash, so an old build is replaced.
RECIPE_VERSION = hashlib.sha256(
    "\0".join(
        (
            INIT_SCRIPT,
            XORG_CONF,
            FLUXBOX_INIT,
            FLUXBOX_OVERLAY,
            FLUXBOX_MENU,
            FLUXBOX_KEYS,
            XRESOURCES,
            DILLORC,
            WELCOME_HTML,
            PROFILE,
            UDHCPC_SCRIPT,
            PASSWD,
            SHADOW,
            GROUP,
            f"{SCREEN_WIDTH}x{SCREEN_HEIGHT}",
            *PACKAGES,
            *PROGRAMS,
            *DATA,
            *MODULES,
        )
    ).encode()
).hexdigest()[:16]


# --- Debian packages ---------------------------------------------------------------------------


def parse_depends(apt_cache_output: str) -> dict[str, list[str]]:
    """`apt-cache depends A B ...` output → each package's hard dependencies (first of alternatives).

    Virtual packages (`<name>`) are left out; an alternative group (`|Depends: a`, then `Depends: b`)
    counts as its first member only.
    """
    depends: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_alternatives = False
    for line in apt_cache_output.splitlines():
        if line and not line.startswith(" "):
            current = depends.setdefault(line.strip(), [])
            in_alternatives = False
            continue
        match = re.match(r"\s+(\|?)(Pre)?Depends: (\S+)", line)
        if current is None or match is None:
            continue
        alternative, _, name = match.groups()
        if not in_alternatives and not name.startswith("<"):
            current.append(name.split(":")[0])
        in_alternatives = bool(alternative)
    return depends


def wanted_dependency(name: str) -> bool:
    return name.startswith("lib") or name in FOLLOWED_DEPENDENCIES


def package_closure(
    roots: Iterable[str], depends_of: Callable[[list[str]], dict[str, list[str]]]
) -> list[str]:
    """The roots and every followed dependency, transitively (breadth first, sorted)."""
    seen = set(roots)
    frontier = sorted(seen)
    while frontier:
        found = depends_of(frontier)
        frontier = sorted({dep for deps in found.values() for dep in deps if wanted_dependency(dep)} - seen)
        seen.update(frontier)
    return sorted(seen)


def apt_depends(packages: list[str]) -> dict[str, list[str]]:
    out = run(
        [
            "apt-cache",
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *packages,
        ]
    )
    return parse_depends(out)


def fetch_packages(cache: Path, log: Callable[[str], None]) -> list[Path]:
    """The .debs of PACKAGES and their libraries, downloaded into `cache` unless already there.

    The list of what to download is remembered with the debs, so a rebuild without apt lists (or
    offline) uses the cached files.
    """
    cache.mkdir(parents=True, exist_ok=True)
    listing = cache / "packages.json"
    try:
        names = package_closure(PACKAGES, apt_depends)
    except BuildError:
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(listing.read_text())
            if cached.get("roots") == list(PACKAGES):
                log("apt lists unavailable: using the cached desktop packages")
                return [cache / name for name in cached["debs"]]
        raise
    have = {path.name.split("_")[0]: path for path in cache.glob("*.deb")}
    missing = [name for name in names if name not in have]
    if missing:
        log(f"downloading {len(missing)} Debian packages for the desktop image (cached afterwards)...")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            os.chmod(tmp, 0o777)  # noqa: S103 - apt downloads as _apt into our private temp dir
            run(["apt-get", "download", "-q", *missing], cwd=Path(tmp))
            for deb in Path(tmp).glob("*.deb"):
                shutil.move(str(deb), cache / deb.name)
                have[deb.name.split("_")[0]] = cache / deb.name
    debs = [have[name] for name in names if name in have]
    absent = sorted(set(names) - set(have))
    if absent:
        raise BuildError(f"apt-get download did not fetch: {', '.join(absent)}")
    listing.write_text(json.dumps({"roots": list(PACKAGES), "debs": [deb.name for deb in debs]}, indent=1))
    return debs


# --- ELF dependencies --------------------------------------------------------------------------


def elf_needed(data: bytes) -> list[str]:
    """The `DT_NEEDED` sonames of a 64-bit little-endian ELF file (what `readelf -d` lists)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:  # PT_LOAD
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    needed: list[int] = []
    strtab = 0
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            needed.append(value)
        elif tag == 5:  # DT_STRTAB, a virtual address
            strtab = next(
                (off + value - vaddr for vaddr, off, size in loads if vaddr <= value < vaddr + size), 0
            )
    return [data[strtab + offset : data.index(b"\0", strtab + offset)].decode() for offset in needed]


def library_closure(root: Path, programs: Iterable[str]) -> list[str]:
    """The programs and every shared library they load, as paths relative to `root`."""
    found: dict[str, str] = {}  # soname -> path

    def locate(soname: str) -> str:
        for folder in LIBRARY_DIRS:
            if (root / folder / soname).exists():
                return f"{folder}/{soname}"
        raise BuildError(f"no package provides {soname}")

    order: list[str] = []
    pending = list(programs)
    while pending:
        path = pending.pop()
        if path in order:
            continue
        order.append(path)
        for soname in elf_needed((root / path).read_bytes()):
            if soname not in found:
                found[soname] = locate(soname)
                pending.append(found[soname])
    return sorted(order)


# --- the root filesystem -----------------------------------------------------------------------


def copy_into(source_root: Path, relative: str, target_root: Path) -> None:
    """Copy a file or folder (symlinks followed for files, kept inside folders) to the same path."""
    source, target = source_root / relative, target_root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    elif source.exists():
        shutil.copyfile(source, target)
        shutil.copymode(source, target)
    else:
        raise BuildError(f"the desktop packages hold no {relative}")


def write(root: Path, relative: str, text: str, mode: int = 0o644) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def assemble_rootfs(packages: Path, rootfs: Path, busybox: Path, modules: list[tuple[str, Path]]) -> None:
    for relative in library_closure(packages, [*PROGRAMS, LOADER]):
        copy_into(packages, relative, rootfs)
    for relative in DATA:
        copy_into(packages, relative, rootfs)
    for folder in ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "home/lab", "mnt", "run", "var"):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "busybox").chmod(0o755)
    os.symlink("../lib/xorg/Xorg", rootfs / "usr/bin/Xorg")
    # Fluxbox's messages for the LANG the image runs with.
    os.symlink("en_US.UTF-8", rootfs / "usr/share/fluxbox/nls/C.UTF-8")
    names = " ".join(name for name, _ in modules)
    init = (
        INIT_SCRIPT.replace("__MODULES__", names)
        .replace("__BANNER__", BANNER)
        .replace("__READY__", DESKTOP_READY)
    )
    write(rootfs, "init", init, 0o755)
    for name, module in modules:
        path = rootfs / "lib/modules" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(read_module(module))
    write(rootfs, "etc/X11/xorg.conf.in", XORG_CONF.replace("__MODE__", f"{SCREEN_WIDTH}x{SCREEN_HEIGHT}"))
    for name, text in (
        ("init", FLUXBOX_INIT),
        ("overlay", FLUXBOX_OVERLAY),
        ("menu", FLUXBOX_MENU),
        ("keys", FLUXBOX_KEYS),
        ("apps", ""),
        ("slitlist", ""),
    ):
        write(rootfs, f"root/.fluxbox/{name}", text)
    write(rootfs, "root/.Xdefaults", XRESOURCES)  # read by every Xt program (xterm)
    write(rootfs, "root/.dillo/dillorc", DILLORC)
    write(rootfs, "usr/share/lab/welcome.html", WELCOME_HTML)
    write(rootfs, "etc/profile", PROFILE)
    write(rootfs, "etc/udhcpc.script", UDHCPC_SCRIPT, 0o755)
    write(rootfs, "etc/passwd", PASSWD)
    write(rootfs, "etc/shadow", SHADOW, 0o600)
    write(rootfs, "etc/group", GROUP)


def make_font_cache(packages: Path, rootfs: Path) -> None:
    """Run the packaged fc-cache on the image's fonts, so no program scans them at boot."""
    loader = packages / LOADER
    library_path = ":".join(str(packages / folder) for folder in LIBRARY_DIRS[:2])
    run(
        [
            str(loader),
            "--library-path",
            library_path,
            str(packages / "usr/bin/fc-cache"),
            "--sysroot",
            str(rootfs),
            "--force",
            "--system-only",
        ]
    )


def pack_initramfs(rootfs: Path, target: Path) -> None:
    """An uncompressed newc cpio of `rootfs`, owned by root, after a small one holding /dev/console.

    The kernel unpacks concatenated archives in order; writing the device node ourselves means the
    build needs no root (no mknod).
    """
    cpio = shutil.which("cpio")
    if cpio is None:
        raise BuildError("cpio not found: apt-get install cpio")
    files = sorted(str(path.relative_to(rootfs)) for path in rootfs.rglob("*"))
    with open(target, "wb") as out:
        out.write(console_cpio_entry())
        out.flush()
        result = subprocess.run(  # noqa: S603 - Debian's cpio, arguments we built
            [cpio, "--create", "--format=newc", "--owner=0:0", "--reproducible", "--quiet"],
            cwd=rootfs,
            input="\n".join(files).encode(),
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if result.returncode != 0:
        raise BuildError(f"cpio failed: {result.stderr.decode(errors='replace')[-500:]}")


def console_cpio_entry() -> bytes:
    """A newc cpio holding only /dev and /dev/console (c 5 1), with its trailer."""
    entries = b""
    for ino, (name, mode, rmajor, rminor) in enumerate(
        (("dev", 0o040755, 0, 0), ("dev/console", 0o020600, 5, 1), ("TRAILER!!!", 0, 0, 0)), start=1
    ):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, 0, 0, 0, rmajor, rminor, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        entries += header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4)
    return entries + b"\0" * (-len(entries) % 512)


# --- the build ---------------------------------------------------------------------------------


def build_desktop_image(output: Path, cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or keep) the desktop image in the store at `output`; return its directory."""
    output = Path(output)
    target = output / DESKTOP_DIRNAME
    with build_lock(output):
        manifest = target / "image.json"
        if manifest.exists():
            with contextlib.suppress(ValueError, OSError):
                if json.loads(manifest.read_text()).get("recipe") == RECIPE_VERSION:
                    log(f"desktop image up to date: {target}")
                    return target
        busybox = find_static_busybox()
        cache = cache or output / ".cache"
        kernel_deb = fetch_kernel_deb(cache)
        debs = fetch_packages(cache / "desktop-debs", log)
        with tempfile.TemporaryDirectory(dir=output) as tmp:
            work = Path(tmp)
            log(f"unpacking {kernel_deb.name} and {len(debs)} packages...")
            vmlinuz, modules = extract_kernel(kernel_deb, work / "kernel", MODULES)
            packages = work / "packages"
            for deb in debs:
                run(["dpkg-deb", "-x", str(deb), str(packages)])
            rootfs = work / "rootfs"
            assemble_rootfs(packages, rootfs, busybox, modules)
            make_font_cache(packages, rootfs)
            staging = work / DESKTOP_DIRNAME
            staging.mkdir()
            vmlinux = pvh_vmlinux(vmlinuz.read_bytes())
            kernel_name = "vmlinux" if vmlinux is not None else "vmlinuz"
            if vmlinux is not None:
                (staging / kernel_name).write_bytes(vmlinux)
            else:
                shutil.copyfile(vmlinuz, staging / kernel_name)
            pack_initramfs(rootfs, staging / "initrd.img")
            (staging / "image.json").write_text(
                json.dumps(
                    {
                        "reference": DESKTOP_REFERENCE,
                        "kernel": kernel_name,
                        "initrd": "initrd.img",
                        "description": "Lab Orchestrator desktop VM (Xorg, Fluxbox, xterm, Dillo; "
                        f"{kernel_deb.name.split('_')[0]})",
                        "recipe": RECIPE_VERSION,
                    },
                    indent=2,
                )
                + "\n"
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        log(f"built {DESKTOP_REFERENCE} in {target}")
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster build-desktop-image", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output", required=True, type=Path, help="image store directory (the --images DIR)")
    parser.add_argument("--cache", type=Path, help="where to keep the .debs (default OUTPUT/.cache)")
    args = parser.parse_args(argv)
    try:
        build_desktop_image(args.output, args.cache)
    except BuildError as exc:
        print(f"build-image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
