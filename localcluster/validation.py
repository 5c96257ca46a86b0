"""Object validation as the real API server and KubeVirt's admission webhook do it.

- Names: RFC 1123 DNS label (namespaces), RFC 1123 subdomain (most kinds), RFC 1035 label (services).
- Labels: qualified-name keys and 63-character values.
- Schemas: KubeVirt kinds against `kubevirt-v1-swagger.json` (the published OpenAPI, $refs resolved by
  jsonschema), built-in kinds against kubernetes-validate's Kubernetes 1.37 strict schemas.
- Unknown fields follow the server's `fieldValidation` parameter: `Strict` answers 400, `Warn` (the
  default when the client sends none, as the Python client does) drops them and returns a `Warning`
  header, `Ignore` drops them silently. KubeVirt's CRDs have structural schemas, so the same applies
  to VMIs: unknown fields are pruned, never stored.
- KubeVirt admission: memory must be requested; interface names match networks, disk names match
  volumes, no duplicate names.

Schemas are compiled lazily and cached (the first validation of a kind pays ~100 ms), so the
server starts fast; `warm_up()` compiles them in the background right after start.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcluster.errors import ApiError, Cause, bad_request, invalid
from localcluster.quota import parse_quantity

if TYPE_CHECKING:
    import jsonschema.protocols
    import referencing
from localcluster.resources import VIRTUAL_MACHINE_INSTANCES, ResourceType

KUBERNETES_SCHEMA_VERSION = "1.37.0"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Swagger definitions that really are free-form (embedded objects, managedFields): never pruned.
_FREE_FORM = {
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Patch",
}


@dataclass
class Checked:
    """The object as it will be stored (unknown fields dropped) and the warnings to send back."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def validate_name(rt: ResourceType, name: str, field_path: str = "metadata.name") -> list[Cause]:
    if not name:
        return [Cause("FieldValueRequired", "Required value: name or generateName is required", field_path)]
    if rt.name_rule == "label":
        ok, limit, what = _DNS_LABEL.match(name), 63, "a lowercase RFC 1123 label"
        rule = (
            "must consist of lower case alphanumeric characters or '-', and must start and end with an "
            "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    elif rt.name_rule == "label1035":
        ok, limit, what = _DNS1035_LABEL.match(name), 63, "a DNS-1035 label"
        rule = (
            "must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex "
            "used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    else:
        ok, limit, what = _DNS_SUBDOMAIN.match(name), 253, "a lowercase RFC 1123 subdomain"
        rule = (
            "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with "
            "an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    causes = []
    if len(name) > limit:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be no more than {limit} characters',
                field_path,
            )
        )
    if not ok:
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": {what} {rule}', field_path))
    return causes


def validate_labels(labels: Any, field_path: str = "metadata.labels") -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(labels, dict):
        return causes
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
            or len(name) > 63
            or not _QUALIFIED_NAME.match(name)
        ):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{key}": name part must consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                    field_path,
                )
            )
        if not isinstance(value, str):
            continue
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an '
                    "empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character (must be no more than "
                    "63 characters)",
                    f"{field_path}",
                )
            )
    return causes


def drop_nulls(value: Any) -> Any:
    """JSON `null` for an optional field means "not set" to the real decoder."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


# -- schemas -----------------------------------------------------------------------------------
class Schemas:
    """Compiled validators per kind, built on first use and cached."""

    def __init__(self, schemas_dir: Path) -> None:
        self.schemas_dir = schemas_dir
        self._lock = threading.Lock()

    @functools.cached_property
    def _kubevirt_definitions(self) -> dict[str, Any]:
        with open(self.schemas_dir / "kubevirt-v1-swagger.json") as f:
            definitions = json.load(f)["definitions"]
        for name, schema in definitions.items():
            if (
                name not in _FREE_FORM
                and schema.get("type") == "object"
                and "additionalProperties" not in schema
            ):
                schema["additionalProperties"] = False
        # The CRD schema marks IntOrString as x-kubernetes-int-or-string; the swagger says "string".
        definitions["k8s.io.apimachinery.pkg.util.intstr.IntOrString"]["type"] = ["string", "integer"]
        return definitions

    @functools.cache  # noqa: B019 - one Schemas object per server, cached for its life
    def kubevirt(self, definition: str) -> jsonschema.protocols.Validator:
        import jsonschema

        with self._lock:
            schema = {"$ref": f"#/definitions/{definition}", "definitions": self._kubevirt_definitions}
            return jsonschema.Draft4Validator(schema)

    @functools.cached_property
    def _kubernetes_registry(self) -> tuple[Path, referencing.Registry]:
        import kubernetes_validate
        import referencing

        schema_dir = (
            Path(kubernetes_validate.__file__).parent
            / "kubernetes-json-schema"
            / f"v{KUBERNETES_SCHEMA_VERSION}-local-strict"
        )
        with open(schema_dir / "_definitions.json") as f:
            definitions = referencing.Resource.from_contents(json.load(f))
        return schema_dir, definitions @ referencing.Registry()

    @functools.cache  # noqa: B019
    def kubernetes(self, kind: str, api_version: str) -> jsonschema.protocols.Validator:
        import jsonschema

        with self._lock:
            schema_dir, registry = self._kubernetes_registry
            group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            with open(schema_dir / f"{kind.lower()}-{group_version}.json") as f:
                schema = json.load(f)
            return jsonschema.Draft202012Validator(schema, registry=registry)

    def validator_for(self, rt: ResourceType) -> jsonschema.protocols.Validator:
        if rt.custom:
            return self.kubevirt(f"{rt.version}.{rt.kind}")
        return self.kubernetes(rt.kind, rt.api_version)

    def warm_up(self, kinds: Iterable[ResourceType]) -> None:
        for rt in kinds:
            self.validator_for(rt)


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _value_repr(value: Any) -> str:
    """The JSON type name, as the CRD validator reports a type mismatch."""
    names = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
    return json.dumps(names.get(type(value), "null"))


def _delete_path(obj: Any, path: list[Any]) -> None:
    for part in path[:-1]:
        obj = obj[part]
    obj.pop(path[-1], None)


def check_schema(
    schemas: Schemas, rt: ResourceType, obj: dict[str, Any], name: str, field_validation: str
) -> Checked:
    """Validate against the kind's schema; prune or reject unknown fields per `field_validation`."""
    validator = schemas.validator_for(rt)
    unknown: list[list[Any]] = []
    causes: list[Cause] = []
    decode_errors: list[str] = []
    for error in validator.iter_errors(obj):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            patterns = list(error.schema.get("patternProperties", {}))
            for key in error.instance:
                if key not in known and not any(re.search(p, key) for p in patterns):
                    unknown.append([*path, key])
        elif error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            causes.append(Cause("FieldValueRequired", "Required value", _field([*path, missing])))
        elif error.validator == "type":
            expected = error.validator_value
            expected = expected[0] if isinstance(expected, list) else expected
            if rt.custom:
                causes.append(
                    Cause(
                        "FieldValueTypeInvalid",
                        f"Invalid value: {_value_repr(error.instance)}: {_field(path)} in body "
                        f"must be of type {expected}: {_value_repr(error.instance)}",
                        _field(path),
                    )
                )
            else:
                # Built-in kinds are decoded into Go structs first: a wrong type is a 400 decode error.
                decode_errors.append(
                    f"json: cannot unmarshal {type(error.instance).__name__} into Go struct "
                    f"field {rt.kind}.{_field(path)} of type {expected}"
                )
        elif error.validator == "enum":
            supported = ", ".join(json.dumps(v) for v in error.validator_value if v is not None)
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"Unsupported value: {json.dumps(error.instance)}: supported values: {supported}",
                    _field(path),
                )
            )
        else:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(error.instance)[:200]}: {error.message[:300]}",
                    _field(path),
                )
            )
    if decode_errors:
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {decode_errors[0]}'
        )
    unknown_fields = sorted(_field(p) for p in unknown)
    if unknown_fields and field_validation == "Strict":
        listing = ", ".join(f'unknown field "{f}"' for f in unknown_fields)
        raise bad_request(f"strict decoding error: {listing}")
    if causes:
        raise invalid(rt, name, causes)
    pruned = copy.deepcopy(obj) if unknown else obj
    for path in sorted(unknown, key=len, reverse=True):
        _delete_path(pruned, path)
    warnings = [f'unknown field "{f}"' for f in unknown_fields] if field_validation != "Ignore" else []
    return Checked(pruned, warnings)


# -- KubeVirt admission (virt-api's validating webhook) --------------------------------------------
def admit_vmi(vmi: dict[str, Any]) -> None:
    spec = vmi.get("spec") or {}
    domain = spec.get("domain") or {}
    name = vmi.get("metadata", {}).get("name", "")
    memory = domain.get("memory") or {}
    requests = (domain.get("resources") or {}).get("requests") or {}
    limits = (domain.get("resources") or {}).get("limits") or {}
    causes: list[Cause] = []
    if not (memory.get("guest") or requests.get("memory") or limits.get("memory") or memory.get("hugepages")):
        causes.append(
            Cause(
                "FieldValueRequired",
                "no memory requested, at least one of 'spec.domain.memory.guest', "
                "'spec.domain.memory.hugePages.size' or 'spec.domain.resources.requests.memory' "
                "must be set",
                "spec.domain.resources.requests.memory",
            )
        )
    devices = domain.get("devices") or {}
    causes += _names_match(
        devices.get("interfaces") or [],
        spec.get("networks") or [],
        "spec.domain.devices.interfaces",
        "spec.networks",
    )
    causes += _names_match(
        devices.get("disks") or [], spec.get("volumes") or [], "spec.domain.devices.disks", None
    )
    causes += _duplicates(spec.get("volumes") or [], "spec.volumes")
    causes += _input_devices(devices.get("inputs") or [])
    causes += _interface_bindings(devices.get("interfaces") or [], spec.get("networks") or [])
    if causes:
        error = invalid(VIRTUAL_MACHINE_INSTANCES, name, causes)
        # virt-api answers through its admission webhook; the message says so on a real cluster.
        error.message = (
            'admission webhook "virtualmachineinstances-create-validator.kubevirt.io" denied '
            "the request: " + "; ".join(c.message for c in causes)
        )
        raise error


def _input_devices(inputs: list[dict[str, Any]]) -> list[Cause]:
    """virt-api's validateInputDevices: tablets only, on usb or virtio (an empty bus becomes usb)."""
    causes = []
    field = "spec.domain.devices.inputs"
    for i, device in enumerate(inputs):
        if device.get("bus", "") not in ("virtio", "usb", ""):
            causes.append(
                Cause(
                    "FieldValueInvalid", "Input device can have only virtio or usb bus.", f"{field}[{i}].bus"
                )
            )
        if device.get("type") != "tablet":
            causes.append(
                Cause("FieldValueInvalid", "Input device can have only tablet type.", f"{field}[{i}].type")
            )
    return causes


INTERFACE_BINDINGS = ("bridge", "masquerade", "sriov", "passt", "binding")


def _interface_bindings(interfaces: list[dict[str, Any]], networks: list[dict[str, Any]]) -> list[Cause]:
    """KubeVirt's binding admission (pkg/network/admitter/binding.go): one binding per interface,
    masquerade only on the pod network."""
    causes = []
    pod_networks = {n.get("name") for n in networks if "pod" in n}
    for i, interface in enumerate(interfaces):
        field = f"spec.domain.devices.interfaces[{i}]"
        if sum(1 for binding in INTERFACE_BINDINGS if binding in interface) != 1:
            message = (
                f"logical {interface.get('name')} interface must have exactly one binding method "
                "or binding plugin"
            )
            causes.append(Cause("FieldValueInvalid", message, field))
        if "masquerade" in interface and interface.get("name") not in pod_networks:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    "Masquerade interface only implemented with pod network",
                    f"{field}.name",
                )
            )
    return causes


def _names_match(
    items: list[dict[str, Any]], targets: list[dict[str, Any]], items_field: str, targets_field: str | None
) -> list[Cause]:
    causes = _duplicates(items, items_field)
    target_names = {t.get("name") for t in targets}
    for i, item in enumerate(items):
        if item.get("name") not in target_names:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{items_field}[{i}].name '{item.get('name')}' not found.",
                    f"{items_field}[{i}].name",
                )
            )
    if targets_field:
        item_names = {item.get("name") for item in items}
        for i, target in enumerate(targets):
            if target.get("name") not in item_names:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"{targets_field}[{i}].name '{target.get('name')}' not found.",
                        f"{targets_field}[{i}].name",
                    )
                )
    return causes


def _duplicates(items: list[dict[str, Any]], items_field: str) -> list[Cause]:
    seen: set[Any] = set()
    causes = []
    for i, item in enumerate(items):
        if item.get("name") in seen:
            causes.append(
                Cause(
                    "FieldValueDuplicate",
                    f'Duplicate value: "{item.get("name")}"',
                    f"{items_field}[{i}].name",
                )
            )
        seen.add(item.get("name"))
    return causes


# -- RoleBindings (pkg/apis/rbac/validation/validation.go, v1 defaults) ---------------------------
RBAC_GROUP = "rbac.authorization.k8s.io"


def _not_supported(value: Any, supported: list[str], field_path: str) -> Cause:
    listed = ", ".join(json.dumps(v) for v in supported)
    return Cause(
        "FieldValueNotSupported",
        f"Unsupported value: {json.dumps(value)}: supported values: {listed}",
        field_path,
    )


def validate_role_binding(binding: dict[str, Any]) -> list[Cause]:
    """Defaults User/Group subjects' apiGroup (as v1 decoding does), then the registry's checks."""
    causes: list[Cause] = []
    role_ref = binding.get("roleRef") or {}
    if role_ref.get("apiGroup") != RBAC_GROUP:
        causes.append(_not_supported(role_ref.get("apiGroup", ""), [RBAC_GROUP], "roleRef.apiGroup"))
    if role_ref.get("kind") not in ("Role", "ClusterRole"):
        causes.append(_not_supported(role_ref.get("kind", ""), ["Role", "ClusterRole"], "roleRef.kind"))
    if not role_ref.get("name"):
        causes.append(Cause("FieldValueRequired", "Required value", "roleRef.name"))
    for index, subject in enumerate(binding.get("subjects") or []):
        path = f"subjects[{index}]"
        kind = subject.get("kind")
        if kind in ("User", "Group"):
            subject.setdefault("apiGroup", RBAC_GROUP)
        if not subject.get("name"):
            causes.append(Cause("FieldValueRequired", "Required value", f"{path}.name"))
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(_not_supported(subject["apiGroup"], [""], f"{path}.apiGroup"))
            if subject.get("name") and not _DNS_SUBDOMAIN.match(subject["name"]):
                causes += validate_name_as_subdomain(subject["name"], f"{path}.name")
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != RBAC_GROUP:
                causes.append(_not_supported(subject.get("apiGroup"), [RBAC_GROUP], f"{path}.apiGroup"))
        else:
            causes.append(_not_supported(kind, ["ServiceAccount", "User", "Group"], f"{path}.kind"))
    return causes


def validate_name_as_subdomain(name: str, field_path: str) -> list[Cause]:
    return [
        Cause(
            "FieldValueInvalid",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            field_path,
        )
    ]


def check_quantities(rt: ResourceType, obj: dict[str, Any], paths: list[tuple[str, ...]], name: str) -> None:
    """ResourceQuota `hard` and VMI resource maps must hold parseable quantities (422 otherwise)."""
    causes = []
    for path in paths:
        current: Any = obj
        for part in path:
            current = current.get(part) if isinstance(current, dict) else None
        if isinstance(current, dict):
            for key, value in current.items():
                try:
                    parse_quantity(value)
                except ValueError as exc:
                    causes.append(
                        Cause(
                            "FieldValueInvalid",
                            f"Invalid value: {json.dumps(value)}: {exc}",
                            ".".join([*path, key]),
                        )
                    )
    if causes:
        raise invalid(rt, name, causes)


def validation_mode(value: str | None) -> str:
    if value in (None, ""):
        return "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise ApiError(
            400, "BadRequest", f"fieldValidation must be one of Ignore, Warn, Strict, got {value!r}"
        )
    return value
