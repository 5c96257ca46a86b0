"""Label and field selectors with the grammar of the real API server.

Label selectors: `a=b`, `a==b`, `a!=b`, `key`, `!key`, `key in (x,y)`, `key notin (x,y)`, `key>1`,
`key<1`, comma-separated (ANDed). Field selectors: `field=value`, `field==value`, `field!=value` over
the few fields each kind supports (metadata.name and metadata.namespace everywhere).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcluster.errors import ApiError, bad_request

Matcher = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op in ("gt", "lt"):
            try:
                number = int(value) if value is not None else None
            except ValueError:
                return False
            if number is None:
                return False
            bound = int(self.values[0])
            return number > bound if self.op == "gt" else number < bound
        raise AssertionError(self.op)


_SPLIT_TOP_LEVEL = re.compile(r",(?![^()]*\))")
_SET_REQ = re.compile(r"^\s*([^\s!=<>(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*$")
_CMP_REQ = re.compile(r"^\s*([^\s!=<>(),]+)\s*(==|!=|=|<|>)\s*([^\s!=<>(),]*)\s*$")
_EXISTS_REQ = re.compile(r"^\s*(!?)\s*([^\s!=<>(),]+)\s*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def parse_label_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    if not text.strip():
        return requirements
    for part in _SPLIT_TOP_LEVEL.split(text):
        requirements.append(_parse_requirement(part))
    return requirements


def _parse_requirement(part: str) -> Requirement:
    if m := _SET_REQ.match(part):
        values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
        _check_values(part, values)
        return Requirement(m.group(1), m.group(2), values)
    if m := _CMP_REQ.match(part):
        key, op, value = m.groups()
        _check_values(part, (value,))
        if op in ("<", ">"):
            if not re.fullmatch(r"-?\d+", value):
                raise bad_request(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                    f"be an integer: {part.strip()!r}"
                )
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        return Requirement(key, "!=" if op == "!=" else "=", (value,))
    if m := _EXISTS_REQ.match(part):
        return Requirement(m.group(2), "!" if m.group(1) else "exists")
    raise bad_request(
        f"unable to parse requirement: found '{part.strip()}', expected: key, '!', 'in', "
        "'notin', '=', '==', '!=', 'gt', 'lt'"
    )


def _check_values(part: str, values: tuple[str, ...]) -> None:
    for value in values:
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise bad_request(
                f"unable to parse requirement: values[0][{part.strip()}]: Invalid value: "
                f'"{value}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.'"
            )


def label_matcher(text: str) -> Matcher:
    requirements = parse_label_selector(text)

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


def match_labels_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A structured `LabelSelector` ({matchLabels, matchExpressions}) as NetworkPolicy uses."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        req = Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        if not req.matches(labels):
            return False
    return True


# Field paths each kind accepts in fieldSelector, beyond metadata.name / metadata.namespace.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "namespaces": ("status.phase",),
    "secrets": ("type",),
}


def field_matcher(text: str, plural: str) -> Matcher:
    clauses: list[tuple[str, str, str]] = []
    allowed = ("metadata.name", "metadata.namespace", *EXTRA_FIELDS.get(plural, ()))
    for part in (p for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.groups()
        if path not in allowed:
            raise ApiError(400, "BadRequest", f"field label not supported: {path}")
        clauses.append((path, "!=" if op == "!=" else "=", value))

    def matches(obj: dict[str, Any]) -> bool:
        for path, op, value in clauses:
            actual = _field_value(obj, path)
            if (actual == value) != (op == "="):
                return False
        return True

    return matches


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return "" if current is None else str(current)
