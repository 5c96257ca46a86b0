"""Pod validation as kube-apiserver does it (pkg/apis/core/validation/validation.go), for the fields the
local cluster runs, and a clear 422 for the fields it does not.

The schema check (kubernetes-validate's strict Pod schema) has already run: types are right. What is
left is what ValidatePodCreate/ValidatePodUpdate add: names, required values, enums, quantities,
limits >= requests, port ranges, duplicate names, and on update the immutable spec. Fields the local
cluster would store but not honour are refused ("localcluster does not implement ...") rather than
accepted and ignored: a test passing here must mean the same pod works on a real cluster.
"""

from __future__ import annotations

import json
import re
from typing import Any

from localcluster.errors import Cause, invalid
from localcluster.quota import parse_quantity
from localcluster.resources import PODS

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
SECCOMP_TYPES = ["Localhost", "RuntimeDefault", "Unconfined"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]

# Pod spec fields the local cluster runs (the rest: 422 naming the field).
SUPPORTED_SPEC_FIELDS = {
    "containers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "hostname",
    "subdomain",
    "automountServiceAccountToken",
    "securityContext",
    "imagePullSecrets",
    "dnsPolicy",
    "enableServiceLinks",
    "serviceAccountName",
    "serviceAccount",
    "nodeName",
    "schedulerName",
    "priority",
    "preemptionPolicy",
    # Stored and refused when the pod is run (the admission policy is where a cluster refuses them,
    # and it must be able to see them): see runner.py.
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "volumes",
}
SUPPORTED_CONTAINER_FIELDS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "resources",
    "ports",
    "securityContext",
    "workingDir",
    "imagePullPolicy",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "tty",
    "volumeMounts",
}
SUPPORTED_SECURITY_CONTEXT_FIELDS = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "privileged",
    "readOnlyRootFilesystem",
    "capabilities",
    "seccompProfile",
}
SUPPORTED_POD_SECURITY_CONTEXT_FIELDS = {"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"}


def _not_implemented(field_path: str, what: str) -> Cause:
    return Cause(
        "FieldValueNotSupported", f"Unsupported value: localcluster does not implement {what}", field_path
    )


def _not_supported(value: Any, supported: list[str], field_path: str) -> Cause:
    listed = ", ".join(json.dumps(v) for v in supported)
    return Cause(
        "FieldValueNotSupported",
        f"Unsupported value: {json.dumps(value)}: supported values: {listed}",
        field_path,
    )


def _required(field_path: str) -> Cause:
    return Cause("FieldValueRequired", "Required value", field_path)


def _dns_label(value: str, field_path: str) -> list[Cause]:
    if _DNS_LABEL.match(value) and len(value) <= 63:
        return []
    if len(value) > 63:
        return [
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{value}": must be no more than 63 characters',
                field_path,
            )
        ]
    return [
        Cause(
            "FieldValueInvalid",
            f'Invalid value: "{value}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
            "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
            "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            field_path,
        )
    ]


def _security_context(context: dict[str, Any], allowed: set[str], path: str) -> list[Cause]:
    causes = [_not_implemented(f"{path}.{key}", key) for key in sorted(set(context) - allowed)]
    for key in ("runAsUser", "runAsGroup"):
        if key in context and not 0 <= context[key] <= 2147483647:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {context[key]}: must be between 0 and 2147483647, inclusive",
                    f"{path}.{key}",
                )
            )
    if context.get("runAsNonRoot") and context.get("runAsUser") == 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "Invalid value: 0: runAsUser cannot be 0 when runAsNonRoot is true",
                f"{path}.runAsUser",
            )
        )
    seccomp = context.get("seccompProfile") or {}
    if seccomp:
        if seccomp.get("type") not in SECCOMP_TYPES:
            causes.append(
                _not_supported(seccomp.get("type", ""), SECCOMP_TYPES, f"{path}.seccompProfile.type")
            )
        elif seccomp["type"] == "Localhost":
            causes.append(_not_implemented(f"{path}.seccompProfile.type", "Localhost seccomp profiles"))
    capabilities = context.get("capabilities") or {}
    if capabilities.get("add"):
        causes.append(_not_implemented(f"{path}.capabilities.add", "adding capabilities"))
    if context.get("privileged") and context.get("allowPrivilegeEscalation") is False:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "Invalid value: false: cannot set `allowPrivilegeEscalation` to false and "
                "`privileged` to true",
                f"{path}",
            )
        )
    return causes


def _resources(resources: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("requests", "limits"):
        for key, value in (resources.get(section) or {}).items():
            field_path = f"{path}.{section}[{key}]"
            if key not in ("cpu", "memory", "ephemeral-storage"):
                causes.append(_not_implemented(field_path, f"the resource {key!r}"))
                continue
            try:
                amount = parse_quantity(value)
            except ValueError as exc:
                causes.append(
                    Cause("FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {exc}", field_path)
                )
                continue
            if amount < 0:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(value)}: must be greater than or equal to 0",
                        field_path,
                    )
                )
            parsed.setdefault(section, {})[key] = (amount, value)
    for key, (request, request_text) in (parsed.get("requests") or {}).items():
        limit = (parsed.get("limits") or {}).get(key)
        if limit is not None and request > limit[0]:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{request_text}": must be less than or equal to {key} limit '
                    f"of {limit[1]}",
                    f"{path}.requests",
                )
            )
    return causes


def _container(container: dict[str, Any], path: str, volume_names: set[str]) -> list[Cause]:
    causes = [
        _not_implemented(f"{path}.{key}", key) for key in sorted(set(container) - SUPPORTED_CONTAINER_FIELDS)
    ]
    name = container.get("name", "")
    causes += _dns_label(name, f"{path}.name") if name else [_required(f"{path}.name")]
    if not str(container.get("image", "")).strip():
        causes.append(_required(f"{path}.image"))
    if "imagePullPolicy" in container and container["imagePullPolicy"] not in PULL_POLICIES:
        causes.append(_not_supported(container["imagePullPolicy"], PULL_POLICIES, f"{path}.imagePullPolicy"))
    for index, env in enumerate(container.get("env") or []):
        env_path = f"{path}.env[{index}]"
        env_name = env.get("name", "")
        if not env_name:
            causes.append(_required(f"{env_path}.name"))
        elif "=" in env_name or not env_name.isprintable():
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{env_name}": a valid environment variable name must consist only of '
                    "printable ASCII characters other than '='",
                    f"{env_path}.name",
                )
            )
        if "valueFrom" in env:
            causes.append(_not_implemented(f"{env_path}.valueFrom", "valueFrom"))
    seen_ports: set[tuple[int, str]] = set()
    for index, port in enumerate(container.get("ports") or []):
        port_path = f"{path}.ports[{index}]"
        number = port.get("containerPort")
        if number is None:
            causes.append(_required(f"{port_path}.containerPort"))
        elif not 1 <= number <= 65535:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                    f"{port_path}.containerPort",
                )
            )
        protocol = port.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            causes.append(_not_supported(protocol, PROTOCOLS, f"{port_path}.protocol"))
        if port.get("name") and not (_PORT_NAME.match(port["name"]) and len(port["name"]) <= 15):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{port["name"]}": must be an IANA_SVC_NAME',
                    f"{port_path}.name",
                )
            )
        if port.get("hostPort"):
            causes.append(_not_implemented(f"{port_path}.hostPort", "host ports"))
        if number is not None and (number, protocol) in seen_ports:
            causes.append(
                Cause("FieldValueDuplicate", f'Duplicate value: "{number}/{protocol}"', f"{port_path}")
            )
        seen_ports.add((number, protocol))
    causes += _resources(container.get("resources") or {}, f"{path}.resources")
    causes += _security_context(
        container.get("securityContext") or {}, SUPPORTED_SECURITY_CONTEXT_FIELDS, f"{path}.securityContext"
    )
    for index, mount in enumerate(container.get("volumeMounts") or []):
        if mount.get("name") not in volume_names:
            causes.append(
                Cause(
                    "FieldValueNotFound",
                    f'Not found: "{mount.get("name", "")}"',
                    f"{path}.volumeMounts[{index}].name",
                )
            )
    return causes


def validate_pod(pod: dict[str, Any]) -> None:
    """Raise a 422 like ValidatePodCreate for what is wrong or not implemented; return if fine."""
    spec = pod.get("spec") or {}
    name = pod.get("metadata", {}).get("name", "")
    causes = [_not_implemented(f"spec.{key}", key) for key in sorted(set(spec) - SUPPORTED_SPEC_FIELDS)]
    volumes = spec.get("volumes") or []
    volume_names = set()
    for index, volume in enumerate(volumes):
        if not volume.get("name"):
            causes.append(_required(f"spec.volumes[{index}].name"))
        volume_names.add(volume.get("name"))
        if set(volume) - {"name", "hostPath"}:
            kinds = ", ".join(sorted(set(volume) - {"name"}))
            causes.append(_not_implemented(f"spec.volumes[{index}]", f"volumes of type {kinds}"))
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required("spec.containers"))
    seen: set[str] = set()
    for index, container in enumerate(containers):
        path = f"spec.containers[{index}]"
        causes += _container(container, path, volume_names)
        if container.get("name") in seen:
            causes.append(
                Cause("FieldValueDuplicate", f'Duplicate value: "{container["name"]}"', f"{path}.name")
            )
        seen.add(container.get("name", ""))
    if "restartPolicy" in spec and spec["restartPolicy"] not in RESTART_POLICIES:
        causes.append(_not_supported(spec["restartPolicy"], RESTART_POLICIES, "spec.restartPolicy"))
    if "dnsPolicy" in spec and spec["dnsPolicy"] not in DNS_POLICIES:
        causes.append(_not_supported(spec["dnsPolicy"], DNS_POLICIES, "spec.dnsPolicy"))
    elif spec.get("dnsPolicy") not in (None, "ClusterFirst"):
        causes.append(_not_implemented("spec.dnsPolicy", f"the DNS policy {spec['dnsPolicy']!r}"))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and grace < 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {grace}: must be greater than or equal to 0",
                "spec.terminationGracePeriodSeconds",
            )
        )
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            causes += _dns_label(spec[key], f"spec.{key}")
    causes += _security_context(
        spec.get("securityContext") or {}, SUPPORTED_POD_SECURITY_CONTEXT_FIELDS, "spec.securityContext"
    )
    if causes:
        raise invalid(PODS, name, causes)


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    """ValidatePodUpdate: the spec is immutable but for a few fields (the local cluster: none)."""
    if new.get("spec") != old.get("spec"):
        raise invalid(
            PODS,
            old["metadata"]["name"],
            [
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative) (localcluster: none of them)",
                    "spec",
                )
            ],
        )
