"""The `qemu` runtime: each VMI is a real `qemu-system-x86_64`, as KubeVirt runs it in its launcher pod.

- Disks: `containerDisk.image` and `kernelBoot.container.image` are pulled from their registries
  before the launch (`pull_images`, localcluster/registry/: skopeo, a cache by digest shared by all
  VMIs, the VMI's `imagePullSecret`), as the kubelet pulls a launcher pod's images; a failed pull is
  ErrImagePull / ImagePullBackOff on the VMI (the cluster retries with the kubelet's back-off). A
  containerDisk's one file in /disk (or its `path`) boots from a throw-away qcow2 overlay, deleted
  with the VMI; an image without one fails the launch with virt-handler's message. A kernel-boot
  image's kernel and initrd boot directly, with `kernelArgs`. The local image store (`--images DIR`,
  `localcluster/qemu/images.py`) is a fallback: a reference it holds is not pulled.
- The node: this host's memory (MemTotal) and CPUs are what the scheduler fits launcher pods into
  (`node_allocatable`).
- cloud-init: a `cloudInitNoCloud` volume becomes a `cidata` ISO disk; `secretRef` Secrets are read
  through the cluster's `read_secret` (base.py).
- Network: the namespace's lab network (`localcluster/qemu/network.py`, started with its first VMI,
  stopped with the namespace). Only KubeVirt's `bridge` binding on the pod network is reproduced: the
  guest takes the address the API reports (its pod IP) by DHCP, with the host name, DNS server and
  search path KubeVirt's DHCP server gives, so any image that runs a DHCP client gets it. Other
  bindings (`masquerade`, whose guest sees 10.0.2.2 behind NAT) and other networks are a launch
  failure (`UnsupportedNetwork`, reported as Synchronized=False) rather than run with a network a
  real cluster would not give.
  Every lab network answers the names of all namespaces' headless Services (`localcluster/dns.py`),
  as cluster DNS does; only the traffic is confined to the namespace.
- Phases: `Scheduling` while preparing, `Scheduled` when files and switch are ready, `Running` once
  QEMU's monitor answers. If the guest cannot start (QEMU exits at once, e.g. "cannot set up guest
  memory 'pc.ram': Cannot allocate memory", or its disks cannot be prepared) the VMI stays
  `Scheduled` with virt-handler's `Synchronized=False` "Synchronizing with the Domain failed." and
  QEMU's message; a guest that exits on its own later is `Failed`.
- Input: each `devices.inputs` tablet is a QEMU `usb-tablet` (on one xHCI controller) or
  `virtio-tablet-pci`, as libvirt attaches them for KubeVirt; without one the guest has only the PC's
  PS/2 mouse, whose relative motion drifts away from the VNC pointer.
- Console/VNC: unix sockets; the console goes through `SerialConsole`, which replays recent output
  (the boot banner) to a new viewer. `pause`/`unpause` are QMP `stop`/`cont`; screenshots are QMP
  `screendump` as PNG.
- Port-forwards: dialled from the lab network's own network namespace, where its gateway is
  (`localcluster/qemu/portforward.py`); the connections of a VM are closed when it stops.
- Clean-up: stop = SIGTERM then SIGKILL and remove the VM's folder; children die with the server
  (parent-death signal) and stale ones from a crashed server are killed on the next start (pidfiles).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from localcluster.dns import pod_hostname, search_domains
from localcluster.qemu import host, portforward
from localcluster.qemu.cloudinit import CloudInitError, nocloud_data, write_cidata_iso
from localcluster.qemu.images import Image, ImageNotFound, ImageStore
from localcluster.qemu.network import LabNetwork, NetworkError
from localcluster.qemu.png import ppm_to_png
from localcluster.qemu.process import Drive, Machine, PidRegistry, qemu_command, spawn, tail, terminate
from localcluster.qemu.qmp import QmpClient, QmpError
from localcluster.qemu.serial import SerialConsole
from localcluster.quota import parse_quantity
from localcluster.registry.containerdisk import ContainerDiskError, disk_of, kernel_of
from localcluster.registry.pull import ImageCache, PulledImage, PullError, Timeout, pull_image
from localcluster.registry.reference import InvalidReference, parse_reference
from localcluster.runtimes.base import (
    DialFailed,
    ImageUse,
    NamespaceNetwork,
    NotSupported,
    PhaseReporter,
    PhaseUpdate,
    PullProgress,
    Runtime,
    StreamKind,
    StreamUnavailable,
    mac_for,
    vmi_images,
)

log = logging.getLogger(__name__)

NODE_NAME = "localcluster"
QMP_READY_SECONDS = 30.0
DEFAULT_PULL_CACHE_BYTES = 20 << 30
# containerd gives up on a pull without progress after 5 min (image_pull_progress_timeout); a pull
# here fails as a whole after this long, and the kubelet's back-off retries it.
DEFAULT_PULL_TIMEOUT_SECONDS = 600.0


def kubelet_pull_message(error: Exception) -> str:
    """The kubelet's ErrImagePull message, as CRI-O (containers/image, like skopeo) words it."""
    code = "DeadlineExceeded" if isinstance(error, Timeout) else "Unknown"
    return f"rpc error: code = {code} desc = {error}"


class LaunchError(Exception):
    """The VMI cannot run; `reason` names the cause in the server log, the message goes to the VMI."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Vm:
    namespace: str
    name: str
    folder: Path
    network: NamespaceNetwork
    boot: asyncio.Task[None] | None = None
    proc: asyncio.subprocess.Process | None = None
    qmp: QmpClient | None = None
    serial: SerialConsole | None = None
    vnc: Path | None = None
    lab_network: LabNetwork | None = None
    running: bool = False
    stopping: bool = False
    started: float = field(default_factory=time.monotonic)
    forwards: set[asyncio.StreamWriter] = field(default_factory=set)  # open port-forwards


def host_allocatable() -> dict[str, Fraction]:
    """This machine as a node: its total memory (/proc/meminfo MemTotal) and its CPUs."""
    memory = Fraction(0)
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = Fraction(int(line.split()[1]) * 1024)
    allocatable = {"cpu": Fraction(os.cpu_count() or 1)}
    if memory:
        allocatable["memory"] = memory
    return allocatable


def sync_failure(message: str, *, qemu_closed: str | None = None) -> str:
    """virt-handler's Synchronized=False message for a guest virt-launcher could not start
    (pkg/virt-handler/cmd-client/errors.go: `server error. command SyncVMI failed: %q`)."""
    if qemu_closed is not None:
        message = (
            f"LibvirtError(Code=1, Domain=10, Message='internal error: QEMU unexpectedly closed the "
            f"monitor (vm='{qemu_closed}'): {message}')"
        )
    return f"server error. command SyncVMI failed: {json.dumps(message)}"


def guest_cores(spec: dict[str, Any]) -> int:
    cpu = spec["domain"].get("cpu") or {}
    return max(1, int(cpu.get("cores") or 1) * int(cpu.get("sockets") or 1) * int(cpu.get("threads") or 1))


def guest_memory_mib(spec: dict[str, Any]) -> int:
    domain = spec["domain"]
    resources = domain.get("resources") or {}
    value = (
        (domain.get("memory") or {}).get("guest")
        or (resources.get("requests") or {}).get("memory")
        or (resources.get("limits") or {}).get("memory")
    )
    if not value:
        raise LaunchError("InvalidSpec", "no memory requested")
    return max(16, math.ceil(parse_quantity(value) / (1 << 20)))


def vmi_tablets(spec: dict[str, Any]) -> tuple[str, ...]:
    """The bus of each input device (admission lets only tablets on usb or virtio through)."""
    return tuple(device.get("bus") or "usb" for device in spec["domain"]["devices"].get("inputs") or [])


def pod_interface(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The VMI's interface on the pod network (None without one), if this runtime can give it.

    KubeVirt's bridge binding puts the guest on the pod's own network: it gets the pod IP by DHCP.
    Masquerade (the guest sees 10.0.2.2/24 behind NAT, `pkg/network/dhcp/masquerade.go`), passt,
    SR-IOV, binding plugins and secondary (Multus) networks are not reproduced, so such a VMI fails
    instead of running with a network a real cluster would not give it.
    """
    interfaces = spec["domain"]["devices"].get("interfaces") or []
    networks = {n["name"]: n for n in spec.get("networks") or []}
    if not interfaces:
        return None
    if len(interfaces) > 1:
        raise LaunchError(
            "UnsupportedNetwork", "the local cluster gives a VMI one interface, on the pod network"
        )
    interface = interfaces[0]
    if "pod" not in networks.get(interface["name"], {}):
        raise LaunchError(
            "UnsupportedNetwork",
            f"interface {interface['name']}: only the pod network exists in the local cluster",
        )
    bindings = ("bridge", "masquerade", "passt", "sriov", "binding")
    binding = next((key for key in bindings if key in interface), "")
    if binding != "bridge":
        raise LaunchError(
            "UnsupportedNetwork",
            f"interface {interface['name']}: the local cluster reproduces only the bridge binding on the pod "
            f"network (the guest gets the pod IP by DHCP), not {binding or 'this binding'}",
        )
    return interface


class QemuRuntime(Runtime):
    name = "qemu"

    def __init__(
        self,
        report: PhaseReporter,
        images: Path | str | None = None,
        state_dir: Path | str | None = None,
        pull_cache: Path | str | None = None,
        pull_cache_bytes: int = DEFAULT_PULL_CACHE_BYTES,
        pull_timeout: float = DEFAULT_PULL_TIMEOUT_SECONDS,
        insecure_registries: tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        super().__init__(report, **options)
        self.store = ImageStore(Path(images) if images else None)
        cache_root = (
            Path(pull_cache)
            if pull_cache
            else Path(state_dir) / "pulls"
            if state_dir
            else Path(tempfile.gettempdir()) / f"localcluster-pulls-{os.getuid()}"
        )
        self.pulls = ImageCache(cache_root, max_bytes=pull_cache_bytes)
        self.pull_timeout = pull_timeout
        self.insecure_registries = frozenset(insecure_registries)
        self._pulled: dict[tuple[str, str], dict[ImageUse, Image | ContainerDiskError]] = {}
        self._holds: dict[tuple[str, str], list[str]] = {}
        self._unpack_locks: dict[str, threading.Lock] = {}
        # Pidfiles outlive the server, so the next one can clean up after a crash. Without a state
        # dir they go to one folder per user, which is safe because records name their owner server.
        pid_folder = (
            Path(state_dir) / "qemu-runtime" / "pids"
            if state_dir
            else Path(tempfile.gettempdir()) / f"localcluster-qemu-{os.getuid()}" / "pids"
        )
        self.registry = PidRegistry(pid_folder)
        # Before anything new starts: whatever a crashed server left running goes now.
        self.registry.reap_stale()
        self._vms: dict[tuple[str, str], _Vm] = {}
        self._networks: dict[str, LabNetwork] = {}
        self._network_locks: dict[str, asyncio.Lock] = {}
        self._names: dict[str, dict[str, list[str]]] = {}
        self._accel: asyncio.Task[str] | None = None
        self._run_dir: Path | None = None
        self._counter = 0
        self._tools: dict[str, str] | None = None
        self._allocatable = host_allocatable()

    # -- set-up ------------------------------------------------------------------------------------
    def _prepare_host(self) -> tuple[dict[str, str], Path]:
        if self._tools is None:
            self._tools = host.find_tools()  # raises ToolsMissing naming the Debian packages
        if self._run_dir is None:
            # Unix socket paths are limited to 108 bytes, so sockets live under a short /tmp path
            # rather than the (often deep) state dir.
            self._run_dir = Path(tempfile.mkdtemp(prefix="lcq-", dir="/tmp"))
        return self._tools, self._run_dir

    def _next_folder(self, prefix: str) -> Path:
        assert self._run_dir is not None
        self._counter += 1
        folder = self._run_dir / f"{prefix}{self._counter}"
        return folder

    async def _accelerator(self, qemu: str) -> str:
        if self._accel is None:
            self._accel = asyncio.create_task(host.detect_accelerator(qemu, self.store.any_kernel()))
        return await asyncio.shield(self._accel)

    async def _lab_network(self, namespace: str, pod_network: NamespaceNetwork) -> LabNetwork:
        async with self._network_locks.setdefault(namespace, asyncio.Lock()):
            network = self._networks.get(namespace)
            if network is None or not network.running:
                if network is not None:
                    await network.stop(self.registry)
                network = LabNetwork(namespace, pod_network.subnet, self._next_folder("net"))
                assert self._run_dir is not None and self._tools is not None
                await network.start(self._tools, self.registry, self._run_dir)
                network.set_names(self._cluster_names())
                self._networks[namespace] = network
            return network

    # -- Runtime interface -------------------------------------------------------------------------
    async def pull_images(self, vmi: dict[str, Any], progress: PullProgress) -> tuple[str, str] | None:
        """Pull each image from its registry (or find it in the local image store, the fallback), then
        take out its disk or kernel; what the launch needs waits in `_pulled` until the VMI goes."""
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        await self.pulls_done(namespace, name)  # a retry: what an earlier attempt held goes first
        loop = asyncio.get_running_loop()
        pulled: dict[ImageUse, Image | ContainerDiskError] = {}
        self._pulled[(namespace, name)] = pulled
        for use in vmi_images(vmi["spec"]):
            with contextlib.suppress(ImageNotFound):
                pulled[use] = self.store.resolve(use.reference)
                continue
            credentials = self._pull_credentials(namespace, use.pull_secret)

            def report(done: int, total: int, reference: str = use.reference) -> None:
                loop.call_soon_threadsafe(progress, reference, done, total)

            cancel = threading.Event()
            try:
                image = await asyncio.to_thread(self._pull, use, credentials, report, cancel)
            except (InvalidReference, PullError) as exc:
                return use.reference, kubelet_pull_message(exc)
            except asyncio.CancelledError:
                cancel.set()  # the VMI went away: skopeo is killed instead of pulling for nobody
                raise
            self.pulls.hold(image.digest)
            self._holds.setdefault((namespace, name), []).append(image.digest)
            try:
                pulled[use] = await asyncio.to_thread(self._unpack, image, use)
            except ContainerDiskError as exc:
                pulled[use] = exc  # the pull worked; the launch fails, as virt-handler's mount does
        return None

    def _pull(
        self, use: ImageUse, credentials: dict[str, Any] | None, report: Any, cancel: threading.Event
    ) -> PulledImage:
        policy = use.pull_policy or ("Always" if use.reference.endswith(":latest") else "IfNotPresent")
        return pull_image(
            use.reference,
            cache=self.pulls,
            credentials=credentials,
            insecure=True if parse_reference(use.reference).registry in self.insecure_registries else None,
            progress=report,
            timeout=self.pull_timeout,
            pull_policy=policy,
            cancel=cancel,
        )

    def _unpack(self, image: PulledImage, use: ImageUse) -> Image:
        """The image's disk (or kernel and initrd), taken out once per image digest and kept beside
        the cache's blobs, so VMIs of the same image share it through their copy-on-write overlays."""
        target = self.pulls.unpacked_dir(image.digest) / (use.kernel_path or use.path or "disk").strip("/")
        with self._unpack_locks.setdefault(str(target), threading.Lock()):
            done = target / "unpacked.json"
            if not done.is_file():
                shutil.rmtree(target, ignore_errors=True)
                if use.kernel_path:
                    kernel, initrd = kernel_of(image, target, use.kernel_path, use.initrd_path)
                    meta = {"kernel": kernel.name, "initrd": initrd.name if initrd else None}
                else:
                    disk, disk_format = disk_of(image, target, use.path)
                    meta = {"disk": disk.name, "format": disk_format}
                done.write_text(json.dumps(meta))
            meta = json.loads(done.read_text())
        if "kernel" in meta:
            initrd = target / meta["initrd"] if meta["initrd"] else None
            return Image(use.reference, kernel=target / meta["kernel"], initrd=initrd)
        return Image(use.reference, disk=target / meta["disk"], disk_format=meta["format"])

    def _pull_credentials(self, namespace: str, secret_name: str | None) -> dict[str, Any] | None:
        """The `.dockerconfigjson` of the pull Secret. Without it the kubelet warns ("Unable to
        retrieve some image pull secrets") and pulls anonymously; so does this."""
        if not secret_name:
            return None
        secret = self.read_secret(namespace, secret_name) or {}
        encoded = (secret.get("data") or {}).get(".dockerconfigjson")
        if secret.get("type") != "kubernetes.io/dockerconfigjson" or not encoded:
            log.warning(
                "%s: pull secret %s missing or not a dockerconfigjson; pulling anonymously",
                namespace,
                secret_name,
            )
            return None
        try:
            credentials = json.loads(base64.b64decode(encoded))
        except ValueError:
            log.warning("%s: pull secret %s does not hold JSON; pulling anonymously", namespace, secret_name)
            return None
        return credentials if isinstance(credentials, dict) else None

    async def pulls_done(self, namespace: str, name: str) -> None:
        self._pulled.pop((namespace, name), None)
        for digest in self._holds.pop((namespace, name), []):
            await asyncio.to_thread(self.pulls.release, digest)

    def node_allocatable(self) -> dict[str, Fraction] | None:
        return dict(self._allocatable)

    async def start(self, vmi: dict[str, Any], network: NamespaceNetwork) -> None:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        vm = _Vm(namespace, name, Path(), network)
        self._vms[(namespace, name)] = vm
        vm.boot = asyncio.create_task(self._boot(vm, vmi))

    async def _boot(self, vm: _Vm, vmi: dict[str, Any]) -> None:
        self.report(vm.namespace, vm.name, PhaseUpdate("Scheduling", node=NODE_NAME))
        try:
            await self._launch(vm, vmi)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            qemu_closed = None
            if isinstance(exc, LaunchError):
                reason, message = exc.reason, str(exc)
                qemu_closed = f"{vm.namespace}_{vm.name}" if exc.reason == "QemuFailed" else None
            elif isinstance(exc, ImageNotFound):
                reason, message = "ImageNotFound", str(exc)
            elif isinstance(exc, host.ToolsMissing):
                reason, message = "QemuNotInstalled", str(exc)
            elif isinstance(exc, CloudInitError):
                reason, message = "CloudInitFailed", str(exc)
            elif isinstance(exc, NetworkError):
                reason, message = "NetworkFailed", str(exc)
            else:
                log.exception("qemu runtime: starting %s/%s failed", vm.namespace, vm.name)
                reason, message = "LauncherFailed", f"{type(exc).__name__}: {exc}"
            log.warning("qemu runtime: %s/%s did not start (%s): %s", vm.namespace, vm.name, reason, message)
            await self._release(vm)
            update = PhaseUpdate(
                "Scheduled", node=NODE_NAME, sync_error=sync_failure(message, qemu_closed=qemu_closed)
            )
            self.report(vm.namespace, vm.name, update)
            return
        assert vm.proc is not None
        returncode = await vm.proc.wait()
        if not vm.stopping:
            message = f"QEMU exited with status {returncode}: {tail(vm.folder / 'qemu.log')}"
            await self._release(vm)
            self.report(
                vm.namespace,
                vm.name,
                PhaseUpdate("Failed", reason="QemuExited", message=message, node=NODE_NAME),
            )

    async def _launch(self, vm: _Vm, vmi: dict[str, Any]) -> None:
        tools, run_dir = self._prepare_host()
        spec = vmi["spec"]
        cores, memory = guest_cores(spec), guest_memory_mib(spec)
        vm.folder = self._next_folder("vm")
        vm.folder.mkdir()
        kernel, drives = await self._volumes(vm, vmi, tools)
        devices = spec["domain"]["devices"]
        lab_network: LabNetwork | None = None
        ip = ""
        mac = ""
        interface = pod_interface(spec)
        if interface is not None:
            lab_network = await self._lab_network(vm.namespace, vm.network)
            address = vm.network.allocate(vm.name)
            ip = str(address)
            mac = interface.get("macAddress") or mac_for(address)
            search = search_domains(vm.namespace, spec.get("subdomain", ""))
            lab_network.add_guest(vm.name, mac, address, pod_hostname(vmi), search)
            vm.lab_network = lab_network
        accel = await self._accelerator(tools["qemu-system-x86_64"])
        self.report(vm.namespace, vm.name, PhaseUpdate("Scheduled", node=NODE_NAME))
        if devices.get("autoattachGraphicsDevice", True):
            vm.vnc = vm.folder / "vnc"
        machine = Machine(
            name=f"{vm.namespace}/{vm.name}",
            accel=accel,
            cores=cores,
            memory_mib=memory,
            qmp=vm.folder / "qmp",
            serial=vm.folder / "serial" if devices.get("autoattachSerialConsole", True) else None,
            vnc=vm.vnc,
            kernel=kernel.kernel if kernel else None,
            initrd=kernel.initrd if kernel else None,
            cmdline=" ".join(filter(None, ["console=ttyS0 quiet", kernel.cmdline if kernel else ""])),
            drives=tuple(drives),
            switch=lab_network.folder if lab_network else None,
            mac=mac,
            tablets=vmi_tablets(spec),
        )
        vm.started = time.monotonic()
        vm.proc = await spawn(
            qemu_command(tools["qemu-system-x86_64"], machine),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr_path=vm.folder / "qemu.log",
        )
        self.registry.record(vm.proc.pid, str(vm.folder), run_dir)
        vm.qmp = await self._connect_qmp(vm)
        if machine.serial is not None:
            vm.serial = SerialConsole(machine.serial)
            await vm.serial.connect()
        vm.running = True
        self.report(
            vm.namespace,
            vm.name,
            PhaseUpdate("Running", ip=ip or None, mac=mac or None, node=NODE_NAME),
        )

    async def _volumes(
        self, vm: _Vm, vmi: dict[str, Any], tools: dict[str, str]
    ) -> tuple[Image | None, list[Drive]]:
        """Resolve images, make overlays and the cidata ISO; return the kernel image (if any) and drives."""
        spec = vmi["spec"]
        disks = {d["name"]: d for d in spec["domain"]["devices"].get("disks") or []}
        kernel: Image | None = None
        drives: list[Drive] = []
        for index, volume in enumerate(spec.get("volumes") or []):
            disk = disks.get(volume["name"], {})
            target = disk.get("cdrom") or disk.get("disk") or disk.get("lun") or {}
            bus, cdrom = target.get("bus", "sata" if "cdrom" in disk else "virtio"), "cdrom" in disk
            boot_index = disk.get("bootOrder")
            if "containerDisk" in volume:
                image = self._pulled_image(vm, volume["name"])
                if image.is_kernel:
                    if kernel is not None:
                        raise LaunchError("InvalidSpec", "the qemu runtime boots one kernel image per VMI")
                    kernel = image
                    continue
                assert image.disk is not None
                overlay = vm.folder / f"disk{index}.qcow2"
                await self._run(
                    tools["qemu-img"],
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    str(image.disk),
                    "-F",
                    image.disk_format,
                    str(overlay),
                )
                drives.append(Drive(overlay, "qcow2", bus, cdrom, boot_index=boot_index))
            elif "cloudInitNoCloud" in volume:
                data = nocloud_data(vmi, volume["cloudInitNoCloud"], self.read_secret)
                iso = await write_cidata_iso(tools["genisoimage"], data, vm.folder)
                drives.append(Drive(iso, "raw", bus, cdrom, readonly=True, boot_index=boot_index))
            elif "emptyDisk" in volume:
                size = int(parse_quantity(volume["emptyDisk"]["capacity"]))
                empty = vm.folder / f"disk{index}.qcow2"
                await self._run(tools["qemu-img"], "create", "-q", "-f", "qcow2", str(empty), str(size))
                drives.append(Drive(empty, "qcow2", bus, cdrom, boot_index=boot_index))
            else:
                kind = next((k for k in volume if k != "name"), "?")
                raise LaunchError(
                    "UnsupportedVolume",
                    f"volume {volume['name']}: {kind} is not supported by the local cluster's qemu runtime",
                )
        kernel_boot = (spec["domain"].get("firmware") or {}).get("kernelBoot") or {}
        if (kernel_boot.get("container") or {}).get("image"):
            if kernel is not None:
                raise LaunchError("InvalidSpec", "the qemu runtime boots one kernel image per VMI")
            kernel = self._pulled_image(vm, None)
        if kernel is not None and kernel_boot.get("kernelArgs"):
            kernel = Image(kernel.reference, kernel.kernel, kernel.initrd, kernel_boot["kernelArgs"])
        if kernel is None and not drives:
            raise LaunchError("InvalidSpec", "nothing to boot: no containerDisk volume")
        return kernel, drives

    def _pulled_image(self, vm: _Vm, volume: str | None) -> Image:
        """What pull_images found for this containerDisk volume (None: kernelBoot's container)."""
        pulled = self._pulled.get((vm.namespace, vm.name)) or {}
        found = next((image for use, image in pulled.items() if use.volume == volume), None)
        if found is None:
            raise LaunchError("LauncherFailed", f"volume {volume or 'kernelBoot'}: its image was not pulled")
        if isinstance(found, ContainerDiskError):
            raise LaunchError("ContainerDiskInvalid", str(found))
        return found

    @staticmethod
    async def _run(*cmd: str) -> None:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise LaunchError(
                "LauncherFailed", f"{Path(cmd[0]).name} failed: {err.decode(errors='replace')[-300:]}"
            )

    async def _connect_qmp(self, vm: _Vm) -> QmpClient:
        """QEMU is up once its monitor answers; fail with its stderr if it exits first."""
        assert vm.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QMP_READY_SECONDS
        while True:
            if vm.proc.returncode is not None:
                raise LaunchError("QemuFailed", tail(vm.folder / "qemu.log"))
            with contextlib.suppress(OSError, QmpError):
                return await QmpClient.connect(vm.folder / "qmp")
            if loop.time() > deadline:
                raise LaunchError(
                    "QemuFailed", f"QEMU's monitor did not answer within {QMP_READY_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.05)

    async def _release(self, vm: _Vm) -> None:
        """Stop the process and free files and the address (idempotent)."""
        vm.running = False
        vm.stopping = True
        for forward in list(vm.forwards):
            forward.close()  # a powered-off VM's connections end with it
        vm.forwards.clear()
        if vm.serial is not None:
            await vm.serial.close()
            vm.serial = None
        if vm.qmp is not None:
            await vm.qmp.close()
            vm.qmp = None
        if vm.proc is not None:
            await terminate(vm.proc)
            self.registry.forget(vm.proc.pid)
        if vm.folder != Path():
            shutil.rmtree(vm.folder, ignore_errors=True)
        if vm.lab_network is not None:
            vm.lab_network.remove_guest(vm.name)
            vm.lab_network = None
        vm.network.release(vm.name)

    async def stop(self, namespace: str, name: str) -> None:
        vm = self._vms.pop((namespace, name), None)
        if vm is None:
            await self.pulls_done(namespace, name)
            return
        vm.stopping = True
        if vm.boot is not None and not vm.boot.done():
            vm.boot.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await vm.boot
        await self._release(vm)
        await self.pulls_done(namespace, name)

    def _running(self, namespace: str, name: str) -> _Vm:
        vm = self._vms.get((namespace, name))
        if vm is None or not vm.running or vm.qmp is None:
            raise StreamUnavailable("VMI is not running")
        return vm

    async def pause(self, namespace: str, name: str) -> None:
        qmp = self._running(namespace, name).qmp
        assert qmp is not None
        await qmp.execute("stop")

    async def unpause(self, namespace: str, name: str) -> None:
        qmp = self._running(namespace, name).qmp
        assert qmp is not None
        await qmp.execute("cont")

    async def open_stream(
        self, namespace: str, name: str, kind: StreamKind
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        vm = self._running(namespace, name)
        if kind == "console":
            if vm.serial is None:
                raise StreamUnavailable("No serial console is attached to this VMI")
            return await vm.serial.attach()
        if vm.vnc is None:
            raise StreamUnavailable("No graphics device is attached to this VMI")
        # QEMU's VNC server takes several clients itself; the cluster kicks the previous viewer.
        return await asyncio.open_unix_connection(str(vm.vnc))

    async def open_port(
        self, namespace: str, name: str, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        vm = self._vms.get((namespace, name))
        network = self._networks.get(namespace)
        if vm is None or not vm.running or network is None or not network.running:
            raise DialFailed(f"dial tcp {address}:{port}: connect: no route to host")
        sock = await portforward.dial(network.enter_command(), address, port)
        reader, writer = await asyncio.open_connection(sock=sock)
        if not vm.running:  # stopped while dialling
            writer.close()
            raise DialFailed(f"dial tcp {address}:{port}: connect: no route to host")
        vm.forwards.add(writer)
        return reader, writer

    async def screenshot(self, namespace: str, name: str) -> bytes:
        vm = self._running(namespace, name)
        if vm.vnc is None:
            raise NotSupported("No graphics device is attached to this VMI")
        assert vm.qmp is not None
        target = vm.folder / "screenshot"
        try:
            # QEMU 7.1+ writes PNG itself; older ones only PPM, which we convert.
            await vm.qmp.execute("screendump", filename=str(target), format="png")
            return target.read_bytes()
        except QmpError:
            await vm.qmp.execute("screendump", filename=str(target))
            return ppm_to_png(target.read_bytes())
        finally:
            target.unlink(missing_ok=True)

    async def namespace_deleted(self, namespace: str) -> None:
        for ns, name in [k for k in self._vms if k[0] == namespace]:
            await self.stop(ns, name)
        network = self._networks.pop(namespace, None)
        self._network_locks.pop(namespace, None)
        if network is not None:
            await network.stop(self.registry)
        if self._names.pop(namespace, None):
            self._publish_names()

    def names_changed(self, namespace: str, records: dict[str, list[str]]) -> None:
        self._names[namespace] = records
        self._publish_names()

    def _cluster_names(self) -> dict[str, list[str]]:
        # Cluster DNS answers every namespace's names to every pod, as kube-dns does; whether the
        # address can be reached is the network's business (another lab's cannot).
        return {name: addresses for records in self._names.values() for name, addresses in records.items()}

    def _publish_names(self) -> None:
        names = self._cluster_names()
        for network in self._networks.values():
            network.set_names(names)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(ns, name) for ns, name in list(self._vms)), return_exceptions=True)
        for namespace in list(self._networks):
            await self.namespace_deleted(namespace)
        if self._accel is not None and not self._accel.done():
            self._accel.cancel()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    # -- for the benchmark and tests ---------------------------------------------------------------
    def qemu_pid(self, namespace: str, name: str) -> int | None:
        vm = self._vms.get((namespace, name))
        return vm.proc.pid if vm and vm.proc else None

    def serial_console(self, namespace: str, name: str) -> SerialConsole | None:
        vm = self._vms.get((namespace, name))
        return vm.serial if vm else None

    def switch_pid(self, namespace: str) -> int | None:
        network = self._networks.get(namespace)
        return network.switch.pid if network and network.switch else None

    def image_cache(self) -> ImageCache:
        return self.pulls

    async def pod_network(self, namespace: str, network: NamespaceNetwork) -> LabNetwork:
        """Pods join the same lab network as the namespace's VMs."""
        self._prepare_host()
        return await self._lab_network(namespace, network)

    def lab_network(self, namespace: str) -> LabNetwork | None:
        """The namespace's running lab network: where the local cluster reaches its guests' ports."""
        network = self._networks.get(namespace)
        return network if network is not None and network.running else None


__all__ = ["QemuRuntime"]
