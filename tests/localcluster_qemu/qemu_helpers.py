"""Shared by the qemu runtime tests and bench/vm_boot.py: tools check, demo image, VMI manifests,
console and VNC clients over the local cluster's real websocket subresources."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import struct
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from localcluster.cloudimage import build_debian_image
from localcluster.demoimage import DEMO_REFERENCE, build_demo_image
from localcluster.desktopimage import DESKTOP_REFERENCE, build_desktop_image

REPO_ROOT = Path(__file__).resolve().parents[2]
# Shared with `make run`-style use and kept between runs: the kernel .deb is fetched only once.
IMAGES_DIR = Path(os.environ.get("LOCALCLUSTER_IMAGES", REPO_ROOT / "var" / "localcluster" / "images"))
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/{sub}"

# executable -> Debian package, for require_tool's skip message
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "busybox": "busybox-static",
    "vde_switch": "vde2",
    "genisoimage": "genisoimage",
    "dnsmasq": "dnsmasq-base",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}


def demo_images() -> Path:
    build_demo_image(IMAGES_DIR, log=lambda _msg: None)
    return IMAGES_DIR


def desktop_images() -> Path:
    """The store with both demo images (the desktop one downloads its packages once, then is cached)."""
    build_demo_image(IMAGES_DIR, log=lambda _msg: None)
    build_desktop_image(IMAGES_DIR, log=lambda _msg: None)
    return IMAGES_DIR


def desktop_vmi(name: str, memory: str = "256Mi", user_data: str | None = None) -> dict[str, Any]:
    """A VMI of the desktop image with the USB tablet labs/manifests.py gives machines with a screen."""
    vmi = demo_vmi(name, image=DESKTOP_REFERENCE, memory=memory, user_data=user_data)
    vmi["spec"]["domain"]["devices"]["inputs"] = [{"name": "tablet", "type": "tablet", "bus": "usb"}]
    return vmi


def debian_images() -> Path:
    """The store with the Debian cloud-style image too: built once (minutes, as root), then cached."""
    build_debian_image(IMAGES_DIR, log=lambda _msg: None)
    return IMAGES_DIR


def demo_vmi(
    name: str,
    image: str = DEMO_REFERENCE,
    memory: str = "128Mi",
    user_data: str | None = None,
    user_data_secret: str | None = None,
    labels: dict[str, str] | None = None,
    subdomain: str | None = None,
) -> dict[str, Any]:
    """A VMI shaped like the ones labs/manifests.py makes: containerDisk, cloud-init, bridge on pod."""
    volumes: list[dict[str, Any]] = [{"name": "rootdisk", "containerDisk": {"image": image}}]
    disks: list[dict[str, Any]] = [{"name": "rootdisk", "disk": {"bus": "virtio"}}]
    if user_data is not None or user_data_secret is not None:
        source = (
            {"userData": user_data} if user_data is not None else {"secretRef": {"name": user_data_secret}}
        )
        volumes.append({"name": "cloudinit", "cloudInitNoCloud": source})
        disks.append({"name": "cloudinit", "disk": {"bus": "virtio"}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "labels": labels or {"app": "qemu-test"}},
        "spec": {
            "hostname": name,
            **({"subdomain": subdomain} if subdomain else {}),
            "terminationGracePeriodSeconds": 0,
            "domain": {
                "cpu": {"cores": 1},
                "memory": {"guest": memory},
                "resources": {"requests": {"memory": memory}},
                "devices": {"disks": disks, "interfaces": [{"name": "default", "bridge": {}}]},
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": volumes,
        },
    }


def host_address() -> str:
    """This machine's address on its way out (no packet is sent: a UDP connect only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any routable address will do
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def qemu_pids(guest: str) -> list[int]:
    """Pids of running QEMU processes whose `-name guest=<ns>/<vmi>` is `guest`."""
    return [pid for pid, cmd in _processes() if "qemu-system" in cmd and f"guest={guest} " in cmd + " "]


def switch_pids(socket_dirs: set[str]) -> list[int]:
    return [
        pid for pid, cmd in _processes() if "vde_switch" in cmd and any(f"-s {d}" in cmd for d in socket_dirs)
    ]


def dnsmasq_pids(socket_dirs: set[str]) -> list[int]:
    """The DHCP and DNS servers of the lab networks whose switches have these socket dirs."""
    return [
        pid for pid, cmd in _processes() if "dnsmasq" in cmd and any(f"{d}.dns/" in cmd for d in socket_dirs)
    ]


def qemu_switch_dirs(guest: str) -> set[str]:
    dirs = set()
    for pid, cmd in _processes():
        if pid in qemu_pids(guest):
            for part in cmd.split():
                if part.startswith("vde,") and "sock=" in part:
                    dirs.add(part.split("sock=")[1].split(",")[0])
    return dirs


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                out.append((int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace").strip()))
    return out


def put_subresource(url: str, token: str, ssl_context: ssl.SSLContext, ns: str, name: str, sub: str) -> int:
    request = urllib.request.Request(
        url + SUBRESOURCES.format(ns=ns, name=name, sub=sub),
        data=b"{}",
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=ssl_context, timeout=30) as response:
        return response.status


def get_subresource(url: str, token: str, ssl_context: ssl.SSLContext, ns: str, name: str, sub: str) -> bytes:
    request = urllib.request.Request(
        url + SUBRESOURCES.format(ns=ns, name=name, sub=sub), headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=ssl_context, timeout=30) as response:
        return response.read()


class Stream:
    """Byte-stream view of a KubeVirt websocket (binary frames, plain.kubevirt.io)."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.buffer = bytearray()

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        ssl_context: ssl.SSLContext,
        ns: str,
        name: str,
        sub: str,
    ) -> Stream:
        ws_url = url.replace("https://", "wss://") + SUBRESOURCES.format(ns=ns, name=name, sub=sub)
        ws = await websockets.connect(
            ws_url,
            ssl=ssl_context,
            subprotocols=["plain.kubevirt.io"],
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            open_timeout=30,
        )
        return cls(ws)

    async def _more(self, timeout: float) -> None:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        self.buffer += message if isinstance(message, bytes) else message.encode()

    async def read_until(self, needle: bytes, timeout: float) -> bytes:
        """Everything up to and including `needle`; raises TimeoutError with what was seen."""
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = bytes(self.buffer[-600:])
                raise TimeoutError(f"{needle!r} not seen in {timeout:.0f} s; got {seen!r}")
            try:
                await self._more(left)
            except TimeoutError:
                continue
        end = self.buffer.index(needle) + len(needle)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    async def read_exactly(self, count: int, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < count:
            await self._more(max(0.01, deadline - time.monotonic()))
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    async def read_for(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (plus anything already buffered)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self._more(left)
            except TimeoutError:
                break
        out = bytes(self.buffer)
        self.buffer.clear()
        return out

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def run(self, command: str, marker: str, timeout: float = 30) -> str:
        """Type `command; echo <marker>-$?` and return the output before the marker's result line.

        The marker is printed through `$((...))` arithmetic so the echoed command line itself never
        contains the text waited for.
        """
        await self.send(f"{command}; echo {marker}-$((0))-$?\n".encode())
        out = await self.read_until(f"{marker}-0-".encode(), timeout)
        status = await self.read_until(b"\n", 10)
        return out.decode(errors="replace") + status.decode(errors="replace")

    async def close(self) -> None:
        await self.ws.close()


async def rfb_framebuffer(stream: Stream) -> tuple[int, int, bytes]:
    """RFB 3.8 handshake with security None, then one full raw FramebufferUpdate: (w, h, 32-bit pixels)."""
    version = await stream.read_exactly(12)
    assert version.startswith(b"RFB 003."), version
    await stream.send(b"RFB 003.008\n")
    count = (await stream.read_exactly(1))[0]
    types = await stream.read_exactly(count)
    assert 1 in types, f"security None not offered: {types!r}"
    await stream.send(b"\x01")
    assert await stream.read_exactly(4) == b"\0\0\0\0", "security handshake failed"
    await stream.send(b"\x01")  # ClientInit: shared
    width, height = struct.unpack(">HH", await stream.read_exactly(4))
    await stream.read_exactly(16)  # server pixel format; we set ours below
    (name_length,) = struct.unpack(">I", await stream.read_exactly(4))
    await stream.read_exactly(name_length)
    # SetPixelFormat 32 bpp true colour, SetEncodings [raw], full non-incremental update request.
    pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    await stream.send(b"\x00\0\0\0" + pixel_format)
    await stream.send(struct.pack(">BxHi", 2, 1, 0))
    await stream.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    pixels = bytearray(width * height * 4)
    while True:
        message_type = (await stream.read_exactly(1))[0]
        if message_type == 0:
            break
        if message_type == 2:  # Bell
            continue
        raise AssertionError(f"unexpected RFB message {message_type}")
    _, rects = struct.unpack(">BH", await stream.read_exactly(3))
    for _ in range(rects):
        x, y, w, h, encoding = struct.unpack(">HHHHi", await stream.read_exactly(12))
        if encoding != 0:  # pseudo-encodings (e.g. desktop size) carry no pixels for us
            continue
        data = await stream.read_exactly(w * h * 4, timeout=60)
        for row in range(h):
            start = ((y + row) * width + x) * 4
            pixels[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
    return width, height, bytes(pixels)


async def rfb_click(stream: Stream, x: int, y: int, button: int = 1) -> None:
    """A click at (x, y) on the screen (button 1 left, 3 right): RFB PointerEvents, down then up."""
    for mask in (0, 1 << (button - 1), 0):
        await stream.send(struct.pack(">BBHH", 5, mask, x, y))
        await asyncio.sleep(0.05)


def framebuffer_region(pixels: bytes, width: int, box: tuple[int, int, int, int]) -> bytes:
    """The 32-bit pixels of the box (left, top, right, bottom) of a framebuffer, row after row."""
    left, top, right, bottom = box
    return b"".join(pixels[(y * width + left) * 4 : (y * width + right) * 4] for y in range(top, bottom))


async def rfb_type(stream: Stream, text: str) -> None:
    """Type characters that need no Shift on a US keyboard (lower case, digits, / - . space), then Enter.

    KeyEvents carry X keysyms; for these characters the keysym is the character's code.
    """
    unshifted = set("abcdefghijklmnopqrstuvwxyz0123456789/-. ")
    assert set(text) <= unshifted, f"needs Shift: {set(text) - unshifted}"
    for keysym in [ord(c) for c in text] + [0xFF0D]:  # XK_Return
        for down in (1, 0):
            await stream.send(struct.pack(">BBxxI", 4, down, keysym))
        await asyncio.sleep(0.02)


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_colours(png: bytes) -> set[tuple[int, ...]]:
    """The distinct pixel values of an 8-bit RGB/RGBA PNG (enough to tell a blank screen)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), f"unsupported PNG {depth=} {colour_type=}"
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[tuple[int, ...]] = set()
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            up_left = previous[i - bpp] if i >= bpp else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + predictor) & 0xFF
        colours.update(tuple(line[i : i + 3]) for i in range(0, stride, bpp))
        previous = line
    return colours


def vmi_status(custom_api: Any, ns: str, name: str) -> dict[str, Any]:
    obj = custom_api.get_namespaced_custom_object("kubevirt.io", "v1", ns, "virtualmachineinstances", name)
    return obj if isinstance(obj, dict) else json.loads(json.dumps(obj))
