"""The interface between the cluster and whatever runs a VMI's guest.

The cluster owns API objects; a runtime owns guests. The cluster calls the runtime when a VMI's
launcher pod would be created (`start`), deleted (`stop`), paused, unpaused, or when someone opens a
console/VNC stream or asks for a screenshot. The runtime reports progress back through the
`PhaseReporter` callback it was given (Scheduling, Scheduled, Running with an IP, or Failed), and the
cluster turns each report into a status update and a watch event.

Before `start`, the cluster asks the runtime what the kubelet and the scheduler would find out:
whether each containerDisk image can be pulled (`image_pull_error`) and how much the node has
(`node_allocatable`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

StreamKind = Literal["console", "vnc"]


class StreamUnavailable(Exception):
    """The runtime has no stream of this kind for the VMI (the websocket answers 400)."""


class NotSupported(Exception):
    """The runtime cannot do this at all (the API answers 400 with this message)."""


class DialFailed(Exception):
    """A TCP connection to the guest's address failed. The message is Go's `net.Dial` error as
    virt-api words it (`dial tcp 10.244.0.2:22: connect: connection refused`)."""

    @classmethod
    def from_os_error(cls, address: str, port: int, error: OSError) -> DialFailed:
        # Go's syscall error strings are the C library's, in lower case.
        reason = (os.strerror(error.errno) if error.errno else str(error)).lower()
        return cls(f"dial tcp {address}:{port}: connect: {reason}")


@dataclass(frozen=True)
class PhaseUpdate:
    """A report from the runtime. With `sync_error` the guest did not start and the phase stays as
    given: virt-handler's SyncVMI failed (Synchronized=False, a SyncFailed event), as when QEMU
    cannot start on a real node."""

    phase: str  # Scheduling, Scheduled, Running, Succeeded or Failed
    reason: str = ""
    message: str = ""
    ip: str | None = None
    mac: str | None = None
    node: str | None = None
    sync_error: str = ""


def docker_reference(reference: str) -> str:
    """The fully qualified name containerd resolves a short reference to (docker.io/library/x:latest)."""
    name = reference.strip()
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{'library/' if not rest else ''}{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def image_not_found(reference: str) -> str:
    """The kubelet's ErrImagePull message for an image the registry does not have (containerd)."""
    full = docker_reference(reference)
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": '
        f'failed to resolve reference "{full}": {full}: not found'
    )


PhaseReporter = Callable[[str, str, PhaseUpdate], None]  # (namespace, name, update)
PullProgress = Callable[[str, int, int], None]  # (image, bytes done, bytes in total)


@dataclass(frozen=True)
class ImageUse:
    """An image a VMI's launcher pod runs: a containerDisk volume's or kernelBoot's container."""

    reference: str
    pull_secret: str | None  # the name of a kubernetes.io/dockerconfigjson Secret in the namespace
    volume: str | None = None  # the containerDisk volume (None for kernelBoot)
    path: str | None = None  # containerDisk.path, the disk inside the image when not the one in /disk
    kernel_path: str | None = None
    initrd_path: str | None = None
    pull_policy: str | None = None


def vmi_images(spec: dict[str, Any]) -> list[ImageUse]:
    """The images a VMI needs pulled, in the order of its volumes, kernelBoot's last."""
    uses = [
        ImageUse(
            v["containerDisk"]["image"],
            v["containerDisk"].get("imagePullSecret"),
            volume=v["name"],
            path=v["containerDisk"].get("path"),
            pull_policy=v["containerDisk"].get("imagePullPolicy"),
        )
        for v in spec.get("volumes") or []
        if "containerDisk" in v
    ]
    container = ((spec["domain"].get("firmware") or {}).get("kernelBoot") or {}).get("container")
    if container and container.get("image"):
        uses.append(
            ImageUse(
                container["image"],
                container.get("imagePullSecret"),
                kernel_path=container.get("kernelPath"),
                initrd_path=container.get("initrdPath"),
                pull_policy=container.get("imagePullPolicy"),
            )
        )
    return uses


@dataclass
class NamespaceNetwork:
    """One L2 segment per namespace: a /24 out of 10.244.0.0/16, like a per-node pod CIDR.

    VMIs in the same namespace share the subnet; the qemu runtime gives each namespace its own
    switch, so the subnet boundary is also the isolation boundary NetworkPolicies would enforce.
    The first address is the gateway; VMIs get the next free ones (their pod IPs).
    """

    namespace: str
    subnet: ipaddress.IPv4Network
    _assigned: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def allocate(self, vmi_name: str) -> ipaddress.IPv4Address:
        if vmi_name in self._assigned:
            return self._assigned[vmi_name]
        used = set(self._assigned.values())
        for host in list(self.subnet.hosts())[1:]:  # .1 is the gateway
            if host not in used:
                self._assigned[vmi_name] = host
                return host
        raise RuntimeError(f"no free address in {self.subnet} for {self.namespace}/{vmi_name}")

    def release(self, vmi_name: str) -> None:
        self._assigned.pop(vmi_name, None)


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """A stable locally-administered MAC derived from the IP (QEMU's 52:54:00 prefix)."""
    packed = ip.packed
    return "52:54:00:" + ":".join(f"{b:02x}" for b in packed[1:])


class Runtime(ABC):
    """What runs the guests. Implementations: `none` (timers, fake streams) and, later, `qemu`."""

    name: str = ""

    def __init__(self, report: PhaseReporter, **options: Any) -> None:
        self.report = report

    @abstractmethod
    async def start(self, vmi: dict[str, Any], network: NamespaceNetwork) -> None:
        """Begin running the VMI; report Scheduling → Scheduled → Running (or Failed) later."""

    @abstractmethod
    async def stop(self, namespace: str, name: str) -> None:
        """Stop the guest for good and free what it holds; returns once it is gone."""

    @abstractmethod
    async def pause(self, namespace: str, name: str) -> None: ...

    @abstractmethod
    async def unpause(self, namespace: str, name: str) -> None: ...

    @abstractmethod
    async def open_stream(
        self, namespace: str, name: str, kind: StreamKind
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to the guest's first serial port (`console`) or its RFB server (`vnc`)."""

    @abstractmethod
    async def screenshot(self, namespace: str, name: str) -> bytes:
        """A PNG of the guest's screen."""

    async def open_port(
        self, namespace: str, name: str, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to `address:port` on the guest's network, as virt-api dials it for
        `portforward` (pkg/virt-api/rest/dialers.go). Raises DialFailed when the guest does not accept
        it. The connection is closed when the guest stops."""
        raise NotSupported(f"the {self.name} runtime cannot forward ports")

    def image_pull_error(self, reference: str) -> str | None:
        """Why the kubelet cannot pull this containerDisk image (its ErrImagePull message), or None."""
        return None

    async def pull_images(self, vmi: dict[str, Any], progress: PullProgress) -> tuple[str, str] | None:
        """Pull what the VMI's launcher pod needs (its containerDisk and kernelBoot images), as the
        kubelet does before the pod starts; (image, ErrImagePull message) for the first that fails.
        `progress(image, bytes_done, bytes_total)` is called on the event loop while pulling."""
        for image in vmi_images(vmi["spec"]):
            message = self.image_pull_error(image.reference)
            if message:
                return image.reference, message
        return None

    async def pulls_done(self, namespace: str, name: str) -> None:  # noqa: B027 - optional hook
        """The VMI is gone: what was pulled for it may be evicted."""

    def node_allocatable(self) -> dict[str, Fraction] | None:
        """The node's allocatable `cpu` and `memory` for the scheduler; None: room for every pod."""
        return None

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret a VMI refers to (cloud-init's `userDataSecretRef`), or None if missing.

        The cluster replaces this with a lookup in its store; runtimes that never read Secrets ignore it.
        """
        return None

    def names_changed(self, namespace: str, records: dict[str, list[str]]) -> None:  # noqa: B027
        """The DNS names of the namespace's headless Services changed (fully qualified name -> addresses).

        Runtimes whose guests resolve names answer these on the namespace's network; others ignore it.
        """

    def image_cache(self) -> Any:
        """The runtime's pull cache (localcluster.registry.pull.ImageCache), for pods' images to share
        with its containerDisks; None: the container runner keeps one of its own."""
        return None

    async def pod_network(self, namespace: str, network: NamespaceNetwork) -> Any:
        """The namespace's lab network (localcluster.qemu.network.LabNetwork) for its pods' containers
        to join, when this runtime runs one; None: the container runner starts one of its own."""
        return None

    async def namespace_deleted(self, namespace: str) -> None:  # noqa: B027 - optional hook
        """Everything in the namespace is gone: free per-namespace resources (e.g. a switch)."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """The server is stopping: stop every guest."""
