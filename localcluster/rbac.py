"""Authentication by bearer token and RBAC authorization, following Kubernetes' RBAC rules.

The policy comes from the same manifest a real deployment applies (`deploy/k8s/rbac.yaml`):
ClusterRoles, Roles, ClusterRoleBindings and RoleBindings with ServiceAccount/User/Group subjects.
Built in, as on any cluster: `system:masters` may do anything, the `cluster-admin` ClusterRole exists,
authenticated users may read discovery, and everyone may read /version and the health endpoints.
"""

from __future__ import annotations

import fnmatch
import secrets
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


CLUSTER_ADMIN = (PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), non_resource_urls=("*",)))
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/")
PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")


@dataclass
class _Binding:
    role_kind: str
    role_name: str
    subjects: list[dict[str, Any]]
    namespace: str = ""  # "" for ClusterRoleBindings

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


@dataclass
class Authorizer:
    cluster_roles: dict[str, tuple[PolicyRule, ...]] = field(default_factory=dict)
    roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = field(default_factory=dict)
    bindings: list[_Binding] = field(default_factory=list)

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
                ref = doc["roleRef"]
                authorizer.bindings.append(
                    _Binding(
                        ref["kind"],
                        ref["name"],
                        doc.get("subjects") or [],
                        meta.get("namespace", "default") if kind == "RoleBinding" else "",
                    )
                )
        return authorizer

    def _rules_for(self, binding: _Binding) -> tuple[PolicyRule, ...]:
        if binding.role_kind == "ClusterRole":
            return self.cluster_roles.get(binding.role_name, ())
        return self.roles.get((binding.namespace, binding.role_name), ())

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
        for binding in self.bindings:
            # A RoleBinding grants only inside its own namespace.
            if binding.namespace and binding.namespace != attrs.namespace:
                continue
            if binding.covers(user) and any(rule.allows(attrs) for rule in self._rules_for(binding)):
                return True
        return False


def forbidden_reason(attrs: RequestAttributes) -> str:
    """The `User "x" cannot ...` sentence of a real 403."""
    if not attrs.resource_request:
        return f'User "{attrs.user.name}" cannot {attrs.verb} path "{attrs.path}"'
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'User "{attrs.user.name}" cannot {attrs.verb} resource "{attrs.combined_resource}" '
        f'in API group "{attrs.group}" {scope}'
    )
