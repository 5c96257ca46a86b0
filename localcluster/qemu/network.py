"""The lab network: per namespace, an L2 segment for its VMs and the host side a pod network gives them.

A real cluster's pod gets its address, router, DNS server and search path from the CNI and kubelet,
and KubeVirt's bridge binding hands exactly those to the guest with its own DHCP server
(`pkg/network/dhcp/bridge.go`, `pkg/network/dhcp/server/server.go`). Here, per namespace:

- a `vde_switch` is the segment; QEMU's NICs plug into its socket folder;
- the switch runs inside a network namespace of its own (with a user namespace, so this works
  without root too), where it owns the tap device `tap0`: the segment's host side. `tap0` has the
  gateway address (.1 of the namespace's /24) and the loopback has the cluster DNS address;
- a `dnsmasq` in the same network namespace serves DHCP to the guests the runtime registered, and
  only to them (each MAC gets the address the API reports, for ever, as KubeVirt's single-client
  server does), with the router, DNS server, search domains, host name and MTU a pod would have;
- a second `dnsmasq` there is the cluster DNS: it answers the names Kubernetes DNS gives headless
  Services (`localcluster/dns.py`), of every namespace as kube-dns does, and nothing else. It is a
  separate process because dnsmasq would also answer the host names it hands out by DHCP, names
  only a Service gives on a real cluster.

That network namespace has no other interface and no route: guests reach each other, the gateway
and the DNS server, never the host, another lab or the internet (a real cluster's NetworkPolicy
lets lab pods reach only each other and cluster DNS). Two namespaces' segments share nothing.

The processes hold what ends them: the switch exits on EOF on its stdin (a pipe we hold) and all
get SIGTERM when the server dies (`setpriv --pdeathsig`, set after entering the namespaces, which
would otherwise clear it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster.qemu.process import PidRegistry, spawn, tail, terminate

READY_SECONDS = 10.0
TAP = "tap0"
# What the pod interface's MTU would be; KubeVirt serves the pod interface's MTU (option 26).
MTU = 1500
# kube-dns's ClusterIP on a kubeadm cluster with the default service CIDR; the local cluster's
# Service addresses never take it.
CLUSTER_DNS_IP = ipaddress.IPv4Address("10.96.0.10")


class NetworkError(Exception):
    pass


@dataclass(frozen=True)
class Guest:
    """One VMI's DHCP answer."""

    tag: str  # dnsmasq tag of its per-guest options
    mac: str
    ip: ipaddress.IPv4Address
    hostname: str
    search: tuple[str, ...]


class LabNetwork:
    def __init__(self, namespace: str, subnet: ipaddress.IPv4Network, folder: Path) -> None:
        self.namespace = namespace
        self.subnet = subnet
        self.folder = folder  # the switch's socket dir: QEMU's `-netdev vde,sock=` points here
        self.config = folder.with_suffix(".dns")  # dnsmasq's files and log
        self.switch: asyncio.subprocess.Process | None = None
        self.dhcp: asyncio.subprocess.Process | None = None
        self.dns: asyncio.subprocess.Process | None = None
        self._tools: dict[str, str] = {}
        self._guests: dict[str, Guest] = {}
        self._names: dict[str, list[str]] = {}
        self._tags = 0

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def running(self) -> bool:
        return self.switch is not None and self.switch.returncode is None

    def enter_command(self) -> list[str]:
        """A command prefix that runs a program inside this network's namespace, on the segment.

        How the local cluster reaches a guest's TCP port (e.g. a port-forward or an SSH check):
        anything started with this prefix sees the segment as the gateway does.
        """
        if self.switch is None:
            raise NetworkError(f"the network of {self.namespace} is not running")
        return [
            self._tools["nsenter"],
            f"--target={self.switch.pid}",
            "--user",
            "--net",
            "--preserve-credentials",
            "--",
        ]

    async def start(self, tools: dict[str, str], registry: PidRegistry, run_dir: Path) -> None:
        self._tools = tools
        self.config.mkdir()
        self._write_config()
        try:
            await self._start_switch(registry, run_dir)
            await self._configure_addresses()
            self.dhcp = await self._start_dnsmasq("dhcp", self._dhcp_options(), registry, run_dir)
            self.dns = await self._start_dnsmasq("dns", self._dns_options(), registry, run_dir)
        except BaseException:
            await self.stop(registry)
            raise

    async def _start_switch(self, registry: PidRegistry, run_dir: Path) -> None:
        log_path = self.folder.with_suffix(".log")
        self.switch = await spawn(
            [
                self._tools["unshare"],
                "--user",
                "--map-root-user",
                "--net",
                "--",
                *self._die_with_server(),
                self._tools["vde_switch"],
                "-s",
                str(self.folder),
                "-t",
                TAP,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr_path=log_path,
        )
        registry.record(self.switch.pid, str(self.folder), run_dir)
        await self._wait(lambda: (self.folder / "ctl").exists(), self.switch, log_path, "vde_switch")

    async def _configure_addresses(self) -> None:
        commands = (
            "link set lo up\n"
            f"addr add {CLUSTER_DNS_IP}/32 dev lo\n"
            f"addr add {self.gateway}/{self.subnet.prefixlen} dev {TAP}\n"
            f"link set {TAP} mtu {MTU} up\n"
        )
        proc = await asyncio.create_subprocess_exec(
            *self.enter_command(),
            self._tools["ip"],
            "-batch",
            "-",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate(commands.encode())
        if proc.returncode != 0:
            raise NetworkError(
                f"cannot set up the network of {self.namespace}: {err.decode(errors='replace').strip()}"
            )

    async def _start_dnsmasq(
        self, role: str, options: list[str], registry: PidRegistry, run_dir: Path
    ) -> asyncio.subprocess.Process:
        log_path = self.config / f"{role}.log"
        command = [
            self._tools["dnsmasq"],
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # nothing from the host's /etc/dnsmasq.conf...
            "--no-hosts",  # ...its /etc/hosts...
            "--no-resolv",  # ...or its resolvers: no name leaves the lab
            "--pid-file=",
            # Already root in its own user namespace; changing user or group is not possible there.
            "--user=root",
            "--group=",
            "--bind-interfaces",
            f"--log-facility={log_path}",
            *options,
        ]
        proc = await spawn(
            [*self.enter_command(), *self._die_with_server(), *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr_path=self.config / f"{role}.err",
        )
        registry.record(proc.pid, str(self.config), run_dir)
        # Its last start-up line, written once its sockets are bound.
        started = "DHCP, sockets bound exclusively" if role == "dhcp" else "using only locally-known"

        def ready() -> bool:
            with contextlib.suppress(OSError):
                return started in log_path.read_text(errors="replace")
            return False

        await self._wait(ready, proc, self.config / f"{role}.err", f"dnsmasq ({role})")
        return proc

    def _die_with_server(self) -> list[str]:
        return [self._tools["setpriv"], "--pdeathsig", "TERM", "--"]

    def _dhcp_options(self) -> list[str]:
        return [
            "--port=0",  # no DNS from this one
            f"--interface={TAP}",
            f"--dhcp-leasefile={self.config / 'leases'}",
            f"--dhcp-range={self.subnet.network_address},static,{self.subnet.netmask},infinite",
            f"--dhcp-hostsfile={self.config / 'dhcp-hosts'}",
            f"--dhcp-optsfile={self.config / 'dhcp-options'}",
            # KubeVirt's server answers its one MAC and ignores everybody else.
            "--dhcp-ignore=tag:!known",
            "--dhcp-authoritative",
            f"--dhcp-option=option:router,{self.gateway}",
            f"--dhcp-option=option:dns-server,{CLUSTER_DNS_IP}",
            f"--dhcp-option=option:mtu,{MTU}",
            "--log-dhcp",
        ]

    def _dns_options(self) -> list[str]:
        return [
            "--interface=lo",  # the cluster DNS address lives on the loopback
            f"--addn-hosts={self.config / 'names'}",
            "--local=/cluster.local/",  # NXDOMAIN for the rest of the zone, never forwarded
        ]

    async def _wait(self, predicate, proc: asyncio.subprocess.Process, log_path: Path, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while not predicate():
            if proc.returncode is not None or loop.time() > deadline:
                raise NetworkError(f"{what} for {self.namespace} did not start: {tail(log_path)}")
            await asyncio.sleep(0.02)

    # -- what dnsmasq answers ------------------------------------------------------------------------
    def add_guest(
        self, name: str, mac: str, ip: ipaddress.IPv4Address, hostname: str, search: list[str]
    ) -> None:
        """Answer this MAC's DHCP requests from now on (before its VM boots)."""
        self._tags += 1
        self._guests[name] = Guest(f"vm{self._tags}", mac, ip, hostname, tuple(search))
        self._reload()

    def remove_guest(self, name: str) -> None:
        if self._guests.pop(name, None) is not None:
            self._reload()

    def set_names(self, records: dict[str, list[str]]) -> None:
        """The DNS names answered on this segment (fully qualified name -> addresses)."""
        if records != self._names:
            self._names = {name: list(addresses) for name, addresses in records.items()}
            self._reload()

    def _write_config(self) -> None:
        hosts, options = [], []
        for guest in self._guests.values():
            hosts.append(f"{guest.mac},set:{guest.tag},{guest.ip},{guest.hostname},infinite")
            if guest.search:
                options.append(f"tag:{guest.tag},option:domain-search,{','.join(guest.search)}")
                # KubeVirt's server sends the longest search domain as the domain name (option 15).
                options.append(f"tag:{guest.tag},option:domain-name,{max(guest.search, key=len)}")
        # A machine's own name first: dnsmasq answers reverse lookups with the first name of an
        # address, and Kubernetes DNS's PTR record is the hostname one.
        ordered = sorted(self._names.items(), key=lambda item: -item[0].count("."))
        names = [f"{address} {name}" for name, addresses in ordered for address in addresses]
        for filename, lines in (("dhcp-hosts", hosts), ("dhcp-options", options), ("names", names)):
            staging = self.config / f".{filename}"
            staging.write_text("".join(f"{line}\n" for line in lines))
            os.replace(staging, self.config / filename)

    def _reload(self) -> None:
        if not self.config.is_dir():
            return
        self._write_config()
        for proc in (self.dhcp, self.dns):
            if proc is not None and proc.returncode is None:
                # SIGHUP re-reads the hosts, options and names files.
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)

    async def stop(self, registry: PidRegistry) -> None:
        for proc in (self.dns, self.dhcp, self.switch):
            if proc is not None:
                await terminate(proc)
                registry.forget(proc.pid)
        self.dns = self.dhcp = self.switch = None
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.config, ignore_errors=True)
        self.folder.with_suffix(".log").unlink(missing_ok=True)
