"""Authentication by bearer token and RBAC authorization, following Kubernetes' RBAC rules.

The policy comes from the same manifest a real deployment applies (`deploy/k8s/rbac.yaml`):
ClusterRoles, Roles, ClusterRoleBindings and RoleBindings with ServiceAccount/User/Group subjects.
RoleBindings created through the API at run time count too (`role_bindings_in`, fed by the store).
Built in, as on any cluster: `system:masters` may do anything, the `cluster-admin` ClusterRole exists,
authenticated users may read discovery, and everyone may read /version and the health endpoints.

Creating a RoleBinding is checked against escalation as kube-apiserver does it
(pkg/registry/rbac/rolebinding/policybased/storage.go, pkg/registry/rbac/escalation_check.go,
pkg/registry/rbac/validation/rule.go): allowed when the user may `bind` the referenced role in the
binding's namespace, or already holds every permission the role grants there.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Identity:
    """A kubeconfig user: the context name, its bearer token and who the server takes it to be."""

    context: str
    token: str
    user: User


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


def default_identities(
    app_namespace: str = "laborchestrator", app_account: str = "laborchestrator"
) -> list[Identity]:
    """The three identities of the kubeconfig, each with a fresh random token."""
    return [
        Identity(
            "laborchestrator", secrets.token_urlsafe(32), service_account_user(app_namespace, app_account)
        ),
        Identity("nobody", secrets.token_urlsafe(32), User("nobody", ("system:authenticated",))),
        Identity(
            "admin", secrets.token_urlsafe(32), User("admin", ("system:masters", "system:authenticated"))
        ),
    ]


@dataclass(frozen=True)
class RequestAttributes:
    """What the authorizer decides on (Kubernetes' authorizer.Attributes)."""

    user: User
    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class PolicyRule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_manifest(cls, rule: dict[str, Any]) -> PolicyRule:
        return cls(
            verbs=tuple(rule.get("verbs") or ()),
            api_groups=tuple(rule.get("apiGroups") or ()),
            resources=tuple(rule.get("resources") or ()),
            resource_names=tuple(rule.get("resourceNames") or ()),
            non_resource_urls=tuple(rule.get("nonResourceURLs") or ()),
        )

    def allows(self, attrs: RequestAttributes) -> bool:
        if "*" not in self.verbs and attrs.verb not in self.verbs:
            return False
        if not attrs.resource_request:
            return any(
                url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1]))
                for url in self.non_resource_urls
            )
        if "*" not in self.api_groups and attrs.group not in self.api_groups:
            return False
        if not any(self._resource_matches(r, attrs) for r in self.resources):
            return False
        return not self.resource_names or (bool(attrs.name) and attrs.name in self.resource_names)

    @staticmethod
    def _resource_matches(rule_resource: str, attrs: RequestAttributes) -> bool:
        if rule_resource in ("*", attrs.combined_resource):
            return True
        return bool(attrs.subresource) and rule_resource == f"*/{attrs.subresource}"

    def breakdown(self) -> list[PolicyRule]:
        """One rule per group x resource x verb (x name), as the escalation check compares them."""
        parts = []
        for group in self.api_groups:
            for resource in self.resources:
                for verb in self.verbs:
                    for name in self.resource_names or ("",):
                        parts.append(PolicyRule((verb,), (group,), (resource,), (name,) if name else ()))
        parts += [
            PolicyRule((verb,), non_resource_urls=(url,))
            for url in self.non_resource_urls
            for verb in self.verbs
        ]
        return parts

    def covers(self, part: PolicyRule) -> bool:
        """Whether this rule grants all of `part` (a rule from `breakdown`): component-helpers'
        auth/rbac/validation/policy_comparator.go `ruleCovers`."""

        def has_all(owned: tuple[str, ...], wanted: tuple[str, ...], wildcard: str | None = "*") -> bool:
            return (wildcard is not None and wildcard in owned) or set(wanted) <= set(owned)

        def resource_covered(wanted: str) -> bool:
            if "*" in self.resources or wanted in self.resources:
                return True
            return "/" in wanted and f"*/{wanted.split('/', 1)[1]}" in self.resources

        def url_covered(wanted: str) -> bool:
            return any(
                owned == wanted or (owned.endswith("*") and wanted.startswith(owned.rstrip("*")))
                for owned in self.non_resource_urls
            )

        names_ok = not self.resource_names or (
            bool(part.resource_names) and set(part.resource_names) <= set(self.resource_names)
        )
        return (
            has_all(self.verbs, part.verbs)
            and has_all(self.api_groups, part.api_groups)
            and all(resource_covered(r) for r in part.resources)
            and all(url_covered(u) for u in part.non_resource_urls)
            and names_ok
        )

    def compact_string(self) -> str:
        """The `{APIGroups:["x"], Resources:["y"], Verbs:["z"]}` form of escalation messages (Go's %q)."""

        def quoted(values: Iterable[str]) -> str:
            return "[" + " ".join(json.dumps(v) for v in values) + "]"

        fields = [
            ("APIGroups", self.api_groups),
            ("Resources", self.resources),
            ("NonResourceURLs", self.non_resource_urls),
            ("ResourceNames", self.resource_names),
            ("Verbs", self.verbs),
        ]
        # Go prints an empty API group as "" inside the brackets, which json.dumps does too.
        return "{" + ", ".join(f"{label}:{quoted(values)}" for label, values in fields if values) + "}"


def _compact(missing: list[PolicyRule]) -> list[PolicyRule]:
    """Merge rules of one group and resource (and name) that differ only by verb
    (pkg/registry/rbac/validation/policy_compact.go)."""
    merged: dict[tuple[str, str, tuple[str, ...]], PolicyRule] = {}
    others = []
    for rule in missing:
        if rule.non_resource_urls or len(rule.api_groups) != 1 or len(rule.resources) != 1:
            others.append(rule)
            continue
        key = (rule.api_groups[0], rule.resources[0], rule.resource_names)
        existing = merged.get(key)
        merged[key] = (
            rule
            if existing is None
            else PolicyRule(
                existing.verbs + rule.verbs, existing.api_groups, existing.resources, existing.resource_names
            )
        )
    return others + list(merged.values())


CLUSTER_ADMIN = (PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), non_resource_urls=("*",)))
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/")
PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")


@dataclass
class _Binding:
    role_kind: str
    role_name: str
    subjects: list[dict[str, Any]]
    namespace: str = ""  # "" for ClusterRoleBindings

    @classmethod
    def from_manifest(cls, doc: dict[str, Any]) -> _Binding:
        ref = doc["roleRef"]
        namespace = (
            (doc.get("metadata") or {}).get("namespace", "default") if doc["kind"] == "RoleBinding" else ""
        )
        return cls(ref["kind"], ref["name"], doc.get("subjects") or [], namespace)

    def covers(self, user: User) -> bool:
        for subject in self.subjects:
            kind = subject.get("kind")
            if kind == "ServiceAccount":
                sa_namespace = subject.get("namespace") or self.namespace
                if user.name == f"system:serviceaccount:{sa_namespace}:{subject.get('name')}":
                    return True
            elif (kind == "User" and subject.get("name") == user.name) or (
                kind == "Group" and subject.get("name") in user.groups
            ):
                return True
        return False


class RoleNotFound(LookupError):
    """A binding's roleRef names a role that does not exist (a 404 on the binding's create)."""

    def __init__(self, plural: str, name: str) -> None:
        super().__init__(f'{plural}.rbac.authorization.k8s.io "{name}" not found')
        self.plural = plural
        self.name = name


def _no_role_bindings(_namespace: str) -> list[dict[str, Any]]:
    return []


@dataclass
class Authorizer:
    cluster_roles: dict[str, tuple[PolicyRule, ...]] = field(default_factory=dict)
    roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = field(default_factory=dict)
    bindings: list[_Binding] = field(default_factory=list)
    # The RoleBinding objects stored in a namespace (the server points this at its store), so that
    # bindings created and deleted at run time grant and stop granting at once.
    role_bindings_in: Callable[[str], list[dict[str, Any]]] = _no_role_bindings

    @classmethod
    def from_file(cls, path: Path) -> Authorizer:
        with open(path) as f:
            return cls.from_documents([d for d in yaml.safe_load_all(f) if d])

    @classmethod
    def from_documents(cls, documents: list[dict[str, Any]]) -> Authorizer:
        authorizer = cls(cluster_roles={"cluster-admin": CLUSTER_ADMIN})
        for doc in documents:
            if doc.get("kind") == "List":
                documents.extend(doc.get("items") or [])
                continue
            kind = doc.get("kind")
            meta = doc.get("metadata") or {}
            rules = tuple(PolicyRule.from_manifest(r) for r in doc.get("rules") or [])
            if kind == "ClusterRole":
                authorizer.cluster_roles[meta["name"]] = rules
            elif kind == "Role":
                authorizer.roles[(meta.get("namespace", "default"), meta["name"])] = rules
            elif kind in ("ClusterRoleBinding", "RoleBinding"):
                authorizer.bindings.append(_Binding.from_manifest(doc))
        return authorizer

    def _rules_for(self, binding: _Binding) -> tuple[PolicyRule, ...]:
        if binding.role_kind == "ClusterRole":
            return self.cluster_roles.get(binding.role_name, ())
        return self.roles.get((binding.namespace, binding.role_name), ())

    def _bindings_for(self, namespace: str) -> list[_Binding]:
        """ClusterRoleBindings, and the RoleBindings of `namespace` (manifest and run time)."""
        bindings = [b for b in self.bindings if not b.namespace or b.namespace == namespace]
        if namespace:
            bindings += [_Binding.from_manifest(doc) for doc in self.role_bindings_in(namespace)]
        return bindings

    def rules_for(self, user: User, namespace: str) -> list[PolicyRule]:
        """Every rule granted to the user in the namespace ("" for cluster-wide grants only)."""
        return [
            rule
            for binding in self._bindings_for(namespace)
            if binding.covers(user)
            for rule in self._rules_for(binding)
        ]

    def allows(self, attrs: RequestAttributes) -> bool:
        user = attrs.user
        if "system:masters" in user.groups:
            return True
        if not attrs.resource_request and attrs.verb == "get":
            if attrs.path in PUBLIC_URLS:
                return True
            if "system:authenticated" in user.groups and any(
                fnmatch.fnmatchcase(attrs.path, pattern) for pattern in DISCOVERY_URLS
            ):
                return True
        return any(rule.allows(attrs) for rule in self.rules_for(user, attrs.namespace))

    # -- escalation check of RoleBinding writes ----------------------------------------------------
    def role_reference_rules(self, role_ref: dict[str, Any], namespace: str) -> tuple[PolicyRule, ...]:
        """The rules a roleRef grants; RoleNotFound if the role does not exist."""
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "ClusterRole":
            if name not in self.cluster_roles:
                raise RoleNotFound("clusterroles", name)
            return self.cluster_roles[name]
        if kind == "Role":
            if (namespace, name) not in self.roles:
                raise RoleNotFound("roles", name)
            return self.roles[(namespace, name)]
        raise ValueError(f"unsupported role reference kind: {json.dumps(kind)}")

    def escalation_refusal(self, user: User, namespace: str, role_ref: dict[str, Any]) -> str | None:
        """Why the user may not bind `role_ref` in the namespace, or None if it may.

        Raises RoleNotFound or ValueError, as the real resolver fails, when the role cannot be read.
        """
        if "system:masters" in user.groups:
            return None
        kind = role_ref.get("kind")
        if kind in ("ClusterRole", "Role"):
            bind = RequestAttributes(
                user=user,
                verb="bind",
                resource_request=True,
                group=role_ref.get("apiGroup", ""),
                resource="clusterroles" if kind == "ClusterRole" else "roles",
                namespace=namespace,
                name=role_ref.get("name", ""),
            )
            if self.allows(bind):
                return None
        wanted = self.role_reference_rules(role_ref, namespace)
        held = self.rules_for(user, namespace)
        missing = [
            part for rule in wanted for part in rule.breakdown() if not any(h.covers(part) for h in held)
        ]
        if not missing:
            return None
        lines = sorted({rule.compact_string() for rule in _compact(missing)})
        groups = "[" + " ".join(json.dumps(g) for g in user.groups) + "]"
        return (
            f"user {json.dumps(user.name)} (groups={groups}) is attempting to grant RBAC permissions "
            "not currently held:\n" + "\n".join(lines)
        )


def forbidden_reason(attrs: RequestAttributes) -> str:
    """The `User "x" cannot ...` sentence of a real 403."""
    if not attrs.resource_request:
        return f'User "{attrs.user.name}" cannot {attrs.verb} path "{attrs.path}"'
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'User "{attrs.user.name}" cannot {attrs.verb} resource "{attrs.combined_resource}" '
        f'in API group "{attrs.group}" {scope}'
    )
