"""The OCI runtime config (runc's config.json) for one container of a pod: a pure function of the pod,
the container, the image's config and where the pod's sandbox is.

What it follows:
- command/args: the kubelet's rules (pkg/kubelet/kuberuntime/kuberuntime_container.go and
  k8s.io/kubernetes/third_party/forked/golang/expansion): `command` replaces the image's Entrypoint
  and drops its Cmd; `args` replaces Cmd.
- Capabilities: containerd's default set (pkg/oci/spec.go `defaultUnixCaps`), minus `drop`
  (`ALL` drops everything). NET_RAW is in it, so `ping` works as root, as in a containerd pod.
- `allowPrivilegeEscalation: false` is `noNewPrivileges` (the default, unset, is false in Kubernetes).
- seccomp `RuntimeDefault`: a deny list of the system calls containerd's default profile leaves out
  for a container without CAP_SYS_ADMIN (kernel modules, mounts, namespaces, reboot, bpf, ...), each
  failing with EPERM. containerd's profile is an allow list; this one is shorter and denies the same
  dangerous calls, not every rare one.
- Resources: memory limit in bytes; CPU limit as a CFS quota over a 100 ms period and CPU request as
  shares (the kubelet's MilliCPUToQuota/MilliCPUToShares).
"""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path
from typing import Any

from localcluster.quota import parse_quantity

CONTAINERD_DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
RUNTIME_DEFAULT_DENIED_SYSCALLS = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
]
CFS_PERIOD_US = 100_000
MIN_SHARES = 2
EPERM = 1


def process_args(container: dict[str, Any], image_config: dict[str, Any]) -> list[str]:
    entrypoint = list(image_config.get("Entrypoint") or [])
    cmd = list(image_config.get("Cmd") or [])
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]
    if container.get("args"):
        return [*entrypoint, *container["args"]]
    return [*entrypoint, *cmd]


def process_env(container: dict[str, Any], image_config: dict[str, Any], hostname: str) -> list[str]:
    env: dict[str, str] = {}
    for entry in image_config.get("Env") or []:
        key, _, value = entry.partition("=")
        env[key] = value
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["HOSTNAME"] = hostname
    for entry in container.get("env") or []:
        env[entry["name"]] = str(entry.get("value", ""))
    return [f"{key}={value}" for key, value in env.items()]


def security_value(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A securityContext field: the container's, else the pod's (where the pod level has it)."""
    container_context = container.get("securityContext") or {}
    if key in container_context:
        return container_context[key]
    return (pod.get("spec", {}).get("securityContext") or {}).get(key)


def capabilities(container: dict[str, Any]) -> list[str]:
    dropped = {
        c.upper()
        for c in ((container.get("securityContext") or {}).get("capabilities") or {}).get("drop") or []
    }
    if "ALL" in dropped:
        return []
    return [c for c in CONTAINERD_DEFAULT_CAPABILITIES if c.removeprefix("CAP_") not in dropped]


def runtime_default_seccomp() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": RUNTIME_DEFAULT_DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
        ],
    }


def resources(container: dict[str, Any]) -> dict[str, Any]:
    spec_resources = container.get("resources") or {}
    limits = spec_resources.get("limits") or {}
    requests = spec_resources.get("requests") or {}
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if "memory" in limits:
        out["memory"] = {"limit": int(parse_quantity(limits["memory"]))}
    cpu: dict[str, Any] = {}
    if "cpu" in limits:
        millis = parse_quantity(limits["cpu"]) * 1000
        cpu["quota"] = max(1000, int(millis * CFS_PERIOD_US / 1000))
        cpu["period"] = CFS_PERIOD_US
    request = requests.get("cpu", limits.get("cpu"))
    if request is not None:
        cpu["shares"] = max(MIN_SHARES, int(parse_quantity(request) * 1024))
    if cpu:
        out["cpu"] = cpu
    return out


def memory_limit(container: dict[str, Any]) -> Fraction | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return parse_quantity(limit) if limit is not None else None


def runtime_config(
    base: dict[str, Any],
    *,
    pod: dict[str, Any],
    container: dict[str, Any],
    image_config: dict[str, Any],
    sandbox_pid: int,
    cgroups_path: str,
    etc_files: dict[str, Path],
    tty: bool = False,
) -> dict[str, Any]:
    """`base` is the config.json `umoci unpack` wrote (image user, default mounts and namespaces)."""
    config = copy.deepcopy(base)
    spec = pod.get("spec") or {}
    hostname = spec.get("hostname") or pod["metadata"]["name"]
    process = config["process"]
    process["terminal"] = tty
    process["args"] = process_args(container, image_config)
    process["env"] = process_env(container, image_config, hostname)
    if container.get("workingDir"):
        process["cwd"] = container["workingDir"]
    user = process.setdefault("user", {"uid": 0, "gid": 0})
    run_as_user = security_value(pod, container, "runAsUser")
    if run_as_user is not None:
        user["uid"] = run_as_user
        user["gid"] = 0 if run_as_user == 0 else user.get("gid", 0)
    run_as_group = security_value(pod, container, "runAsGroup")
    if run_as_group is not None:
        user["gid"] = run_as_group
    user.pop("additionalGids", None)
    caps = capabilities(container)
    process["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    process["noNewPrivileges"] = security_value(pod, container, "allowPrivilegeEscalation") is False
    process["oomScoreAdj"] = 1000 if not (container.get("resources") or {}).get("limits") else 999
    config["hostname"] = hostname
    config["root"] = {
        "path": "rootfs",
        "readonly": bool(security_value(pod, container, "readOnlyRootFilesystem")),
    }
    mounts = [m for m in config.get("mounts") or [] if m.get("destination") not in etc_files]
    for destination, source in etc_files.items():
        mounts.append(
            {"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "ro"]}
        )
    config["mounts"] = mounts
    linux = config.setdefault("linux", {})
    namespaces = [n for n in linux.get("namespaces") or [] if n["type"] not in ("network", "ipc")]
    namespaces += [
        {"type": "network", "path": f"/proc/{sandbox_pid}/ns/net"},
        {"type": "ipc", "path": f"/proc/{sandbox_pid}/ns/ipc"},
    ]
    linux["namespaces"] = namespaces
    linux["cgroupsPath"] = cgroups_path
    linux["resources"] = resources(container)
    seccomp = security_value(pod, container, "seccompProfile") or {}
    if seccomp.get("type") == "RuntimeDefault":
        linux["seccomp"] = runtime_default_seccomp()
    else:
        linux.pop("seccomp", None)
    return config
