"""The desktop demo image on the qemu runtime, through the local cluster's real API and websockets:
it boots to an X11 desktop (not a text console), and a VNC client's pointer and keyboard reach it.

The last screenshot is saved as test-artifacts/qemu/desktop.png.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from localcluster.desktopimage import BANNER as DESKTOP_BANNER
from localcluster.desktopimage import DESKTOP_READY, SCREEN_HEIGHT, SCREEN_WIDTH
from localcluster.harness import LocalCluster, start_local_cluster
from tests.conftest import require_tool
from tests.localcluster_qemu.qemu_helpers import (
    REPO_ROOT,
    TOOLS,
    Stream,
    desktop_images,
    desktop_vmi,
    framebuffer_region,
    get_subresource,
    png_colours,
    png_size,
    rfb_click,
    rfb_framebuffer,
    rfb_type,
    vmi_status,
    wait_for,
)

pytestmark = pytest.mark.qemu

VMI = ("kubevirt.io", "v1")
BOOT_TIMEOUT = 180  # a TCG guest on two cores shared with the rest of the suite
# A text console shows at most 16 colours; the desktop's gradients and anti-aliased text, hundreds.
DESKTOP_COLOURS = 200
ARTIFACTS = REPO_ROOT / "test-artifacts" / "qemu"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    for executable, package in TOOLS.items():
        require_tool(executable, package)
    images = desktop_images()
    with start_local_cluster(tmp_path_factory.mktemp("desktop-cluster"), runtime="qemu", images=images) as c:
        yield c


@pytest.fixture(scope="module")
def desk(cluster: LocalCluster) -> Iterator[dict[str, Any]]:
    """One desktop VM, booted until its screen shows the desktop; its namespace and last screenshot."""
    api = cluster.api_client("admin")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"desktop-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    body = desktop_vmi("desk", user_data="#cloud-config\npassword: desk-pass-1\n")
    custom.create_namespaced_custom_object(*VMI, ns, "virtualmachineinstances", body)

    def desktop_on_screen() -> bytes | None:
        status = vmi_status(custom, ns, "desk").get("status") or {}
        assert status.get("phase") != "Failed", f"the desktop VM failed: {status}"
        if status.get("phase") != "Running":
            return None
        png = screenshot(cluster, ns)
        return png if len(png_colours(png)) >= DESKTOP_COLOURS else None

    png = wait_for(desktop_on_screen, BOOT_TIMEOUT, "the desktop on the screen", interval=1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "desktop.png").write_bytes(png)
    ip = vmi_status(custom, ns, "desk")["status"]["interfaces"][0]["ipAddress"]
    yield {"ns": ns, "png": png, "ip": ip}
    core.delete_namespace(ns)


def screenshot(cluster: LocalCluster, ns: str) -> bytes:
    return get_subresource(
        cluster.url, cluster.token("admin"), cluster.ssl_context(), ns, "desk", "vnc/screenshot"
    )


async def open_stream(cluster: LocalCluster, ns: str, kind: str) -> Stream:
    return await Stream.open(cluster.url, cluster.token("admin"), cluster.ssl_context(), ns, "desk", kind)


def test_the_screen_is_a_desktop_not_a_text_console(desk: dict[str, Any]) -> None:
    png = desk["png"]
    assert png_size(png) == (SCREEN_WIDTH, SCREEN_HEIGHT)
    assert len(png_colours(png)) >= DESKTOP_COLOURS


async def test_the_serial_console_says_when_the_desktop_is_up(
    cluster: LocalCluster, desk: dict[str, Any]
) -> None:
    stream = await open_stream(cluster, desk["ns"], "console")
    try:
        # The console replays what the guest printed before we connected.
        seen = await stream.read_until(f"{DESKTOP_READY} (desk)".encode(), 60)
        # Its banner (before or after that line) names the address it took by DHCP: the one the
        # API reports.
        banner = f"{DESKTOP_BANNER} desk ({desk['ip']})".encode()
        if banner not in seen:
            await stream.read_until(banner, 60)
    finally:
        await stream.close()


async def framebuffer(cluster: LocalCluster, ns: str) -> tuple[Stream, int, bytes]:
    """A VNC connection (kicking any earlier one) and the screen's pixels."""
    vnc = await open_stream(cluster, ns, "vnc")
    width, height, pixels = await rfb_framebuffer(vnc)
    assert (width, height) == (SCREEN_WIDTH, SCREEN_HEIGHT)
    return vnc, width, pixels


async def test_a_right_click_on_the_background_opens_the_menu_where_the_pointer_is(
    cluster: LocalCluster, desk: dict[str, Any]
) -> None:
    """The USB tablet is absolute: the menu opens at the VNC client's pointer (a PS/2 mouse would move
    relatively from wherever the guest's pointer was, if it moved at all)."""
    where = (180, 500)  # the background, left of the browser and below the terminal
    below_right = (where[0] + 8, where[1] + 8, where[0] + 120, where[1] + 60)
    vnc, _, before = await framebuffer(cluster, desk["ns"])
    try:
        await rfb_click(vnc, *where, button=3)
    finally:
        await vnc.close()

    async def menu_shown() -> bool:
        vnc, width, after = await framebuffer(cluster, desk["ns"])
        await vnc.close()
        return framebuffer_region(after, width, below_right) != framebuffer_region(before, width, below_right)

    for _ in range(30):
        if await menu_shown():
            break
        await asyncio.sleep(1)
    else:
        pytest.fail(f"no menu appeared below and right of {where} after a right click")
    vnc, _, _ = await framebuffer(cluster, desk["ns"])
    try:
        await rfb_click(vnc, 480, 620)  # a left click on the background closes the menu
    finally:
        await vnc.close()


async def test_a_vnc_clients_keyboard_types_into_the_terminal(
    cluster: LocalCluster, desk: dict[str, Any]
) -> None:
    """Click into the terminal window and type a command over VNC; the serial console then finds the
    file it made (Xorg reads the keyboard without udev, from the devices /init listed)."""
    out = ""
    # Under emulation on a loaded machine the first click can land before the window manager gives
    # focus: click and type again (the same file, so a second try changes nothing else).
    for _attempt in range(3):
        vnc, _, _ = await framebuffer(cluster, desk["ns"])
        try:
            await rfb_click(vnc, 640, 400)  # the browser first, so the terminal must be clicked for focus
            await asyncio.sleep(1)
            await rfb_click(vnc, 300, 250)  # inside the terminal window (56x22 characters at +16+16)
            await asyncio.sleep(1)
            await rfb_type(vnc, "touch /tmp/typed-over-vnc")
        finally:
            await vnc.close()
        console = await open_stream(cluster, desk["ns"], "console")
        try:
            for _ in range(20):  # the keys are typed into a TCG guest: give it time
                out = await console.run("ls /tmp/typed-over-vnc 2>&1", "VNCCHECK")
                if "No such file" not in out:
                    break
                await asyncio.sleep(1)
        finally:
            await console.close()
        if "No such file" not in out:
            break
    assert "/tmp/typed-over-vnc" in out and "No such file" not in out, out
