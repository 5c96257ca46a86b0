"""The local cluster's kubelet for pods: each pod a sandbox, each container a real `runc` container.

Per pod:
- a sandbox process (`unshare --net --ipc sleep infinity`, the pause container's job) holds the pod's
  network and IPC namespaces; every container of the pod joins them;
- `vde_plug2tap` inside that network namespace plugs its `eth0` into the namespace's lab network
  (the VDE switch the VMs of the same namespace are on, localcluster/qemu/network.py), with the pod
  IP the API reports (the cluster's per-namespace allocator, shared with VMIs), the gateway as default
  route and `/etc/resolv.conf` pointing at the lab network's cluster DNS, as the kubelet writes it;
- each container: `umoci unpack` of its image into a fresh bundle, the runtime config from
  `spec.py`, and `runc run --keep` in the foreground: its exit status is the container's, and the
  kept cgroup tells whether the kernel OOM-killed it before `runc delete` removes it. Output goes to a
  bounded buffer (pods/log); restarts follow the pod's restartPolicy with the kubelet's back-off
  (10 s doubling to 5 min, CrashLoopBackOff meanwhile).

Statuses go back to the cluster as `PodReport`s, worded as the kubelet and containerd word them.

Needs root and Debian's `runc` and `umoci` (and the lab network's tools); without them a pod's
containers wait with `CreateContainerError` naming what is missing, and VMs are unaffected.

Leftovers: sandbox and plug processes die with the server (parent-death signal); containers are
recorded under the state dir's runc root, so the next server start kills and deletes any that a
crashed server left, then removes their cgroups and bundles.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster.containers import images as image_store
from localcluster.containers.spec import runtime_config, security_value
from localcluster.harness import die_with_parent
from localcluster.qemu.network import CLUSTER_DNS_IP, MTU, LabNetwork, NetworkError
from localcluster.qemu.process import PidRegistry, terminate
from localcluster.runtimes.base import NamespaceNetwork, mac_for
from localcluster.store import now_timestamp

log = logging.getLogger(__name__)

# executable -> Debian package
TOOLS = {
    "runc": "runc",
    "umoci": "umoci",
    "vde_plug2tap": "vde2",
    "vde_switch": "vde2",
    "dnsmasq": "dnsmasq-base",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
}
BACKOFF_SECONDS = (10.0, 300.0)  # the kubelet's container restart and image pull back-off
BACKOFF_RESET_SECONDS = 600.0  # a container that ran this long restarts without back-off
IMAGE_PULL_NEXT_SYNC_SECONDS = 1.0
LOG_LIMIT_BYTES = 1 << 20  # what pods/log keeps per container (the kubelet rotates at 10 MiB)
READ_CHUNK = 65536
MAX_GRACE_SECONDS = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
READY_SECONDS = 10.0


@dataclass(frozen=True)
class ContainerReport:
    """One container's status as the kubelet writes it (core/v1 ContainerStatus)."""

    name: str
    state: dict[str, Any]
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    started: bool = False  # has run at least once (the kubelet's phase rules need it)
    image_id: str = ""


@dataclass(frozen=True)
class PodReport:
    pod_ip: str | None = None
    container: ContainerReport | None = None
    event: tuple[str, str, str] | None = None  # (type, reason, message) on the pod


PodReporter = Callable[[str, str, PodReport], None]
NetworkProvider = Callable[[str, NamespaceNetwork], Awaitable[LabNetwork | None]]


class LogBuffer:
    """The last LOG_LIMIT_BYTES a container wrote, and how much it wrote in all (for followers)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.total = 0
        self.changed = asyncio.Event()
        self.closed = False

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        self.total += len(chunk)
        if len(self.data) > LOG_LIMIT_BYTES:
            del self.data[: len(self.data) - LOG_LIMIT_BYTES]
        self.changed.set()
        self.changed = asyncio.Event()

    def since(self, offset: int) -> bytes:
        """What was written after `offset` bytes (as much of it as is still kept)."""
        missing = self.total - offset
        if missing <= 0:
            return b""
        return bytes(self.data[-missing:]) if missing < len(self.data) else bytes(self.data)

    def close(self) -> None:
        self.closed = True
        self.changed.set()


@dataclass
class _Container:
    spec: dict[str, Any]
    runc_id: str
    cgroups_path: str
    restarts: int = 0
    running: bool = False
    started: bool = False
    log: LogBuffer = field(default_factory=LogBuffer)
    previous_log: LogBuffer | None = None
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    last_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    obj: dict[str, Any]
    folder: Path
    network: NamespaceNetwork
    containers: dict[str, _Container] = field(default_factory=dict)
    sandbox: asyncio.subprocess.Process | None = None
    plug: asyncio.subprocess.Process | None = None
    ip: ipaddress.IPv4Address | None = None
    task: asyncio.Task[None] | None = None
    stopping: bool = False


class ContainerRunner:
    def __init__(
        self,
        report: PodReporter,
        *,
        state_dir: Path,
        images: image_store.ContainerImages,
        network_for: NetworkProvider,
        read_secret: Callable[[str, str], dict[str, Any] | None] = lambda _ns, _name: None,
    ) -> None:
        self.report = report
        self.read_secret = read_secret
        self.images = images
        self.network_for = network_for
        self.folder = state_dir / "containers"
        self.runc_root = self.folder / "runc"
        # Cgroups of this state dir's containers: one folder per server state dir, so two test
        # servers never clean up each other's.
        digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
        self.cgroup_parent = f"/localcluster-{digest}"
        self.registry = PidRegistry(self.folder / "pids")
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._tools: dict[str, str] = {}
        self._missing = self._find_missing()
        self._own_networks: dict[str, LabNetwork] = {}
        self._network_locks: dict[str, asyncio.Lock] = {}
        self._names: dict[str, list[str]] = {}
        self._run_dir: Path | None = None
        if self._missing is None:
            self.clean_up_stale()

    # -- what this host offers -----------------------------------------------------------------------
    def _find_missing(self) -> str | None:
        found = {exe: shutil.which(exe) for exe in TOOLS}
        missing = sorted({TOOLS[exe] for exe, path in found.items() if path is None})
        problems = []
        if os.geteuid() != 0:
            problems.append("root (runc needs it to create namespaces and cgroups)")
        if missing:
            problems.append("the Debian packages " + " ".join(missing))
        self._tools = {exe: path for exe, path in found.items() if path}
        if problems:
            return "localcluster cannot run containers here: it needs " + " and ".join(problems)
        return None

    @property
    def missing(self) -> str | None:
        """Why this host cannot run containers, or None."""
        return self._missing

    def clean_up_stale(self) -> None:
        """Whatever a crashed server with this state dir left: containers, cgroups, bundles."""
        self.registry.reap_stale()
        if self.runc_root.is_dir():
            listing = subprocess.run(  # noqa: S603 - fixed tool path
                [self._tools["runc"], "--root", str(self.runc_root), "list", "-q"],
                capture_output=True,
                text=True,
                check=False,
            )
            for runc_id in listing.stdout.split():
                log.warning("deleting container %s left by a previous server", runc_id)
                subprocess.run(  # noqa: S603
                    [self._tools["runc"], "--root", str(self.runc_root), "delete", "--force", runc_id],
                    capture_output=True,
                    check=False,
                )
        # Anything still in our cgroups is a container process of a dead server (runc's state can
        # be gone or stale while the process lives on): kill it.
        self._kill_cgroup_members(self.cgroup_parent)
        # A killed container's cgroup empties once its parent reaps it, a moment after the kill.
        deadline = time.monotonic() + READY_SECONDS
        while self._remove_cgroups(self.cgroup_parent) and time.monotonic() < deadline:
            time.sleep(0.01)
        shutil.rmtree(self.folder / "pods", ignore_errors=True)

    @staticmethod
    def _kill_cgroup_members(path: str) -> None:
        for hierarchy in (CGROUP_ROOT / "pids", CGROUP_ROOT / "unified", CGROUP_ROOT):
            top = hierarchy / path.lstrip("/")
            if not top.is_dir():
                continue
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)

    @staticmethod
    def _remove_cgroups(path: str) -> bool:
        """rmdir a cgroup subtree in every hierarchy (deepest first; only empty cgroups go).
        True if some of it is still there."""
        for hierarchy in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()] if CGROUP_ROOT.is_dir() else []:
            top = hierarchy / path.lstrip("/")
            if not top.is_dir():
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        return (
            any((h / path.lstrip("/")).is_dir() for h in CGROUP_ROOT.iterdir())
            if CGROUP_ROOT.is_dir()
            else False
        )

    # -- pods ------------------------------------------------------------------------------------------
    def start(self, pod: dict[str, Any], network: NamespaceNetwork) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        folder = self.folder / "pods" / meta["uid"]
        state = _Pod(meta["namespace"], meta["name"], meta["uid"], pod, folder, network)
        for container in pod["spec"]["containers"]:
            state.containers[container["name"]] = _Container(
                container,
                runc_id=f"{meta['uid']}-{container['name']}",
                cgroups_path=f"{self.cgroup_parent}/{meta['uid']}/{container['name']}",
            )
        self._pods[key] = state
        state.task = asyncio.get_running_loop().create_task(self._run_pod(state))

    def _report(self, pod: _Pod, report: PodReport) -> None:
        if not pod.stopping:
            self.report(pod.namespace, pod.name, report)

    def _waiting(self, pod: _Pod, container: _Container, reason: str, message: str = "") -> None:
        waiting = {"reason": reason, **({"message": message} if message else {})}
        self._report(
            pod,
            PodReport(
                container=ContainerReport(
                    container.spec["name"],
                    {"waiting": waiting},
                    container.last_state,
                    container.restarts,
                    container.started,
                )
            ),
        )

    async def _run_pod(self, pod: _Pod) -> None:
        refusal = self._missing or self._refusal(pod.obj)
        if refusal:
            for container in pod.containers.values():
                self._waiting(pod, container, "CreateContainerError", refusal)
            self._report(pod, PodReport(event=("Warning", "Failed", f"Error: {refusal}")))
            return
        try:
            await self._start_sandbox(pod)
        except (OSError, NetworkError, SandboxError) as exc:
            message = f"Failed to create pod sandbox: rpc error: code = Unknown desc = {exc}"
            for container in pod.containers.values():
                self._waiting(pod, container, "ContainerCreating")
            self._report(pod, PodReport(event=("Warning", "FailedCreatePodSandBox", message)))
            return
        self._report(pod, PodReport(pod_ip=str(pod.ip)))
        for container in pod.containers.values():
            container.task = asyncio.get_running_loop().create_task(self._run_container(pod, container))
        await asyncio.gather(*(c.task for c in pod.containers.values() if c.task), return_exceptions=True)

    @staticmethod
    def _refusal(pod: dict[str, Any]) -> str | None:
        """What the local cluster will not run (a cluster's admission policy would refuse it first)."""
        spec = pod["spec"]
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                return f"localcluster does not run pods with {key}"
        if spec.get("volumes"):
            return "localcluster does not run pods with volumes"
        for container in spec["containers"]:
            if (container.get("securityContext") or {}).get("privileged"):
                return f'localcluster does not run privileged containers ("{container["name"]}")'
        return None

    # -- the sandbox: network namespace on the lab network ------------------------------------------
    async def _start_sandbox(self, pod: _Pod) -> None:
        pod.folder.mkdir(parents=True, exist_ok=True)
        lab = await self._lab_network(pod.namespace, pod.network)
        pod.sandbox = await self._spawn(
            [self._tools["unshare"], "--net", "--ipc", "--", "sleep", "infinity"],
            pod.folder / "sandbox.log",
            marker="sleep",
        )
        own_net = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + READY_SECONDS
        while True:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pod.sandbox.pid}/ns/net") != own_net:
                    break
            if pod.sandbox.returncode is not None or time.monotonic() > deadline:
                raise SandboxError("the pod sandbox did not start")
            await asyncio.sleep(0.005)
        netns = f"/proc/{pod.sandbox.pid}/ns/net"
        pod.ip = pod.network.allocate(f"pod/{pod.name}")
        pod.plug = await self._spawn(
            [
                self._tools["nsenter"],
                f"--net={netns}",
                "--",
                self._tools["vde_plug2tap"],
                "-s",
                str(lab.folder),
                "eth0",
            ],
            pod.folder / "plug.log",
            marker="vde_plug2tap",
        )
        commands = (
            "link set lo up\n"
            f"link set eth0 address {mac_for(pod.ip)}\n"
            f"addr add {pod.ip}/{pod.network.subnet.prefixlen} dev eth0\n"
            f"link set eth0 mtu {MTU} up\n"
            f"route add default via {pod.network.gateway}\n"
        )
        while not await self._run_quietly(
            self._tools["nsenter"], f"--net={netns}", "--", self._tools["ip"], "link", "show", "eth0"
        ):
            if pod.plug.returncode is not None or time.monotonic() > deadline:
                detail = _tail(pod.folder / "plug.log")
                raise SandboxError(f"vde_plug2tap did not attach the pod to its lab network: {detail}")
            await asyncio.sleep(0.005)
        proc = await asyncio.create_subprocess_exec(
            self._tools["nsenter"],
            f"--net={netns}",
            "--",
            self._tools["ip"],
            "-batch",
            "-",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate(commands.encode())
        if proc.returncode != 0:
            raise SandboxError(f"cannot configure the pod's network: {err.decode(errors='replace').strip()}")
        self._write_etc_files(pod)

    def _write_etc_files(self, pod: _Pod) -> None:
        spec = pod.obj["spec"]
        hostname = spec.get("hostname") or pod.name
        search = [f"{pod.namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        fqdn = ""
        if spec.get("subdomain"):
            fqdn = f"{hostname}.{spec['subdomain']}.{pod.namespace}.svc.cluster.local"
        etc = pod.folder / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"search {' '.join(search)}\nnameserver {CLUSTER_DNS_IP}\noptions ndots:5\n"
        )
        # The kubelet's managed /etc/hosts (pkg/kubelet/kubelet_pods.go, managedHostsFileContent).
        (etc / "hosts").write_text(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{pod.ip}\t{fqdn + chr(9) if fqdn else ''}{hostname}\n"
        )
        (etc / "hostname").write_text(f"{hostname}\n")

    async def _lab_network(self, namespace: str, network: NamespaceNetwork) -> LabNetwork:
        lab = await self.network_for(namespace, network)
        if lab is not None:
            return lab
        # The VM runtime has no lab networks (`none`): the pods of a namespace get one of their own.
        async with self._network_locks.setdefault(namespace, asyncio.Lock()):
            lab = self._own_networks.get(namespace)
            if lab is None or not lab.running:
                if self._run_dir is None:
                    self._run_dir = Path(tempfile.mkdtemp(prefix="lcc-", dir="/tmp"))
                lab = LabNetwork(namespace, network.subnet, self._run_dir / f"net-{namespace}")
                await lab.start(self._tools, self.registry, self._run_dir)
                lab.set_names(self._names)
                self._own_networks[namespace] = lab
            return lab

    def names_changed(self, records: dict[str, list[str]]) -> None:
        self._names = dict(records)
        for lab in self._own_networks.values():
            lab.set_names(self._names)

    async def _spawn(self, cmd: list[str], stderr_path: Path, marker: str) -> asyncio.subprocess.Process:
        """A helper that dies with the server; recorded so a crashed server's next start kills it
        (`marker`: a word of its command line, PidRegistry's check against a recycled pid)."""
        with open(stderr_path, "wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.registry.record(proc.pid, marker, self.folder)
        return proc

    @staticmethod
    async def _run_quietly(*cmd: str) -> bool:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return await proc.wait() == 0

    # -- containers -------------------------------------------------------------------------------------
    async def _run_container(self, pod: _Pod, container: _Container) -> None:
        policy = pod.obj["spec"].get("restartPolicy", "Always")
        backoff = BACKOFF_SECONDS[0]
        pull_backoff = BACKOFF_SECONDS[0]
        reference = container.spec["image"]
        while not pod.stopping:
            self._report(pod, PodReport(event=("Normal", "Pulling", f'Pulling image "{reference}"')))
            pull_started = time.monotonic()
            try:
                image = await self.images.acquire(
                    reference,
                    credentials=self._pull_credentials(pod),
                    pull_policy=container.spec.get("imagePullPolicy", "IfNotPresent"),
                )
            except image_store.ImageNotFound as exc:
                self._waiting(pod, container, "ErrImagePull", str(exc))
                self._report(
                    pod, PodReport(event=("Warning", "Failed", f'Failed to pull image "{reference}": {exc}'))
                )
                await asyncio.sleep(IMAGE_PULL_NEXT_SYNC_SECONDS)
                self._waiting(pod, container, "ImagePullBackOff", f'Back-off pulling image "{reference}"')
                await asyncio.sleep(pull_backoff)
                pull_backoff = min(pull_backoff * 2, BACKOFF_SECONDS[1])
                continue
            pulled_in = time.monotonic() - pull_started
            self._report(
                pod,
                PodReport(
                    event=("Normal", "Pulled", f'Successfully pulled image "{reference}" in {pulled_in:.3f}s')
                ),
            )
            started = time.monotonic()
            terminated = await self._run_once(pod, container, image)
            if terminated is None:  # stopped by us
                return
            container.last_state = {"terminated": terminated}
            failed = terminated["exitCode"] != 0
            restart = policy == "Always" or (policy == "OnFailure" and failed)
            if not restart or pod.stopping:
                self._report(
                    pod,
                    PodReport(
                        container=ContainerReport(
                            container.spec["name"],
                            {"terminated": terminated},
                            {},
                            container.restarts,
                            container.started,
                        )
                    ),
                )
                return
            if time.monotonic() - started > BACKOFF_RESET_SECONDS:
                backoff = BACKOFF_SECONDS[0]
            container.restarts += 1
            message = (
                f"back-off {int(backoff)}s restarting failed container={container.spec['name']} "
                f"pod={pod.name}_{pod.namespace}({pod.uid})"
            )
            self._waiting(pod, container, "CrashLoopBackOff", message)
            self._report(
                pod,
                PodReport(
                    event=(
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container "
                        + container.spec["name"]
                        + f" in pod {pod.name}_{pod.namespace}({pod.uid})",
                    )
                ),
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_SECONDS[1])

    def _pull_credentials(self, pod: _Pod) -> dict[str, Any] | None:
        """The first imagePullSecret's `.dockerconfigjson`; without one the kubelet pulls anonymously."""
        for entry in pod.obj["spec"].get("imagePullSecrets") or []:
            secret = self.read_secret(pod.namespace, entry.get("name", "")) or {}
            encoded = (secret.get("data") or {}).get(".dockerconfigjson")
            if secret.get("type") == "kubernetes.io/dockerconfigjson" and encoded:
                with contextlib.suppress(ValueError):
                    credentials = json.loads(base64.b64decode(encoded))
                    if isinstance(credentials, dict):
                        return credentials
        return None

    async def _run_once(
        self, pod: _Pod, container: _Container, image: image_store.LocalImage
    ) -> dict[str, Any] | None:
        name = container.spec["name"]
        bundle = pod.folder / f"bundle-{name}"
        shutil.rmtree(bundle, ignore_errors=True)
        try:
            await image_store.unpack(self._tools["umoci"], image, bundle)
            base = json.loads((bundle / "config.json").read_text())
            config = runtime_config(
                base,
                pod=pod.obj,
                container=container.spec,
                image_config=image_store.image_config(image),
                sandbox_pid=pod.sandbox.pid if pod.sandbox else 0,
                cgroups_path=container.cgroups_path,
                etc_files={
                    "/etc/resolv.conf": pod.folder / "etc" / "resolv.conf",
                    "/etc/hosts": pod.folder / "etc" / "hosts",
                    "/etc/hostname": pod.folder / "etc" / "hostname",
                },
            )
        except (OSError, ValueError, image_store.UnpackFailed) as exc:
            return self._start_error(container, f"failed to create the container: {exc}")
        if config["process"]["user"].get("uid") == 0 and security_value(
            pod.obj, container.spec, "runAsNonRoot"
        ):
            self._waiting(
                pod,
                container,
                "CreateContainerConfigError",
                'container has runAsNonRoot and image will run as root (pod: "'
                + f'{pod.name}_{pod.namespace}({pod.uid})", container: {name})',
            )
            await asyncio.sleep(BACKOFF_SECONDS[0])
            return self._start_error(container, "container has runAsNonRoot and image will run as root")
        (bundle / "config.json").write_text(json.dumps(config))
        if container.previous_log is not None or container.started:
            container.previous_log = container.log
            container.log = LogBuffer()
        started_at = now_timestamp()
        pid_file = bundle / "pid"
        container.proc = await asyncio.create_subprocess_exec(
            self._tools["runc"],
            "--root",
            str(self.runc_root),
            "run",
            "--keep",
            "--pid-file",
            str(pid_file),
            "--bundle",
            str(bundle),
            container.runc_id,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.registry.record(container.proc.pid, container.runc_id, self.folder)
        runc_errors = bytearray()
        pumps = asyncio.gather(
            self._pump(container.proc.stdout, container.log, None),
            self._pump(container.proc.stderr, container.log, runc_errors),
        )
        # runc writes the pid file once the container's process exists: from then on it runs
        # (and can be exec'd into); a process that fails to start never gets there.
        while not pid_file.exists() and container.proc.returncode is None:
            await asyncio.sleep(0.002)
        container.running = pid_file.exists()
        container.started = True
        if container.running:
            self._report(
                pod,
                PodReport(
                    container=ContainerReport(
                        name,
                        {"running": {"startedAt": started_at}},
                        container.last_state,
                        container.restarts,
                        True,
                    ),
                    event=("Normal", "Started", f"Started container {name}"),
                ),
            )
        await pumps
        code = await container.proc.wait()
        self.registry.forget(container.proc.pid)
        container.running = False
        oom = self._oom_killed(container.cgroups_path)
        await self._delete(container.runc_id)
        self._remove_cgroups(container.cgroups_path)
        if pod.stopping:
            return None
        finished_at = now_timestamp()
        error_line = _runc_error(bytes(runc_errors))
        if error_line and "unable to start container process" in error_line:
            return self._start_error(container, error_line, started_at)
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        exit_code = code if code >= 0 else 128 - code
        return {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": finished_at,
            "containerID": f"runc://{container.runc_id}",
        }

    @staticmethod
    def _start_error(container: _Container, message: str, started_at: str | None = None) -> dict[str, Any]:
        """containerd's StartError: exit code 128, the OCI runtime's reason as the message."""
        now = now_timestamp()
        return {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": started_at or "1970-01-01T00:00:00Z",
            "finishedAt": now,
            "containerID": f"runc://{container.runc_id}",
        }

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader | None, buffer: LogBuffer, runc_errors: bytearray | None
    ) -> None:
        if stream is None:
            return
        while chunk := await stream.read(READ_CHUNK):
            buffer.append(chunk)
            if runc_errors is not None and b"level=error" in chunk:
                runc_errors += chunk[-4096:]
                del runc_errors[:-8192]

    def _oom_killed(self, cgroups_path: str) -> bool:
        v1 = CGROUP_ROOT / "memory" / cgroups_path.lstrip("/") / "memory.oom_control"
        v2 = CGROUP_ROOT / cgroups_path.lstrip("/") / "memory.events"
        for path in (v1, v2):
            with contextlib.suppress(OSError, ValueError):
                for line in path.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    async def _delete(self, runc_id: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._tools["runc"],
            "--root",
            str(self.runc_root),
            "delete",
            "--force",
            runc_id,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await proc.wait()

    # -- stopping ---------------------------------------------------------------------------------------
    async def stop(self, namespace: str, name: str) -> None:
        pod = self._pods.pop((namespace, name), None)
        if pod is None:
            return
        pod.stopping = True
        grace = min(float(pod.obj["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS)
        running = [c for c in pod.containers.values() if c.proc is not None and c.proc.returncode is None]
        for container in running:
            await self._signal(container.runc_id, "TERM")
        if running:
            waits = [c.proc.wait() for c in running if c.proc]
            _, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=grace)
            for container in running:
                if container.proc and container.proc.returncode is None:
                    await self._signal(container.runc_id, "KILL")
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for container in pod.containers.values():
            if container.task is not None and not container.task.done():
                container.task.cancel()  # waiting in a back-off, or done with its process
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await container.task
            await self._delete(container.runc_id)
            self._remove_cgroups(container.cgroups_path)
            container.log.close()
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.task
        for proc in (pod.plug, pod.sandbox):
            if proc is not None:
                await terminate(proc, grace=1.0)
                self.registry.forget(proc.pid)
        self._remove_cgroups(f"{self.cgroup_parent}/{pod.uid}")
        pod.network.release(f"pod/{pod.name}")
        shutil.rmtree(pod.folder, ignore_errors=True)

    async def _signal(self, runc_id: str, sig: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._tools["runc"],
            "--root",
            str(self.runc_root),
            "kill",
            runc_id,
            sig,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await proc.wait()

    async def namespace_deleted(self, namespace: str) -> None:
        for ns, name in [k for k in self._pods if k[0] == namespace]:
            await self.stop(ns, name)
        lab = self._own_networks.pop(namespace, None)
        self._network_locks.pop(namespace, None)
        if lab is not None:
            await lab.stop(self.registry)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(ns, name) for ns, name in list(self._pods)), return_exceptions=True)
        for namespace in list(self._own_networks):
            await self.namespace_deleted(namespace)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        self._remove_cgroups(self.cgroup_parent)

    # -- logs and exec ----------------------------------------------------------------------------------
    def container(self, namespace: str, name: str, container: str) -> _Container | None:
        pod = self._pods.get((namespace, name))
        return pod.containers.get(container) if pod else None

    def exec_command(
        self, namespace: str, name: str, container: str, command: list[str], tty: bool
    ) -> list[str]:
        """The `runc exec` command line for pods/exec (the caller runs it, see exec.py)."""
        state = self.container(namespace, name, container)
        if state is None or not state.running:
            raise ContainerNotRunning(f'container not found ("{container}")')
        return [
            self._tools["runc"],
            "--root",
            str(self.runc_root),
            "exec",
            *(["--tty"] if tty else []),
            state.runc_id,
            *command,
        ]


class SandboxError(Exception):
    pass


class ContainerNotRunning(Exception):
    pass


def _runc_error(stderr: bytes) -> str:
    """runc's own error line (`time=... level=error msg="runc run failed: ..."`), its message only."""
    for line in reversed(stderr.decode(errors="replace").splitlines()):
        if "level=error" in line and 'msg="' in line:
            message = line.split('msg="', 1)[1].rsplit('"', 1)[0]
            return message.replace('\\"', '"')
    return ""


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " ".join(path.read_bytes()[-400:].decode(errors="replace").split())
    return ""


__all__ = ["ContainerNotRunning", "ContainerReport", "ContainerRunner", "LogBuffer", "PodReport"]
