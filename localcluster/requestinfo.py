"""Turn a request path and method into what it asks for, the way the API server's RequestInfoFactory does.

`/api/v1/namespaces/ns/secrets/s` → resource request: group "", version v1, namespace ns, resource
secrets, name s; the verb comes from the method (GET → get, or list/watch without a name, ...).
Paths that name no resource (`/api`, `/apis/kubevirt.io/v1`, `/version`) are non-resource requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from localcluster.resources import SUBRESOURCES_GROUP

# GET /api/v1/namespaces/{name}/status is the namespace's status, not a resource called "status".
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    path: str
    verb: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    subresource_args: tuple[str, ...] = ()  # portforward's port and protocol

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _is_true(value: str | None) -> bool:
    return value in ("true", "1", "True")


def parse(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    non_resource = RequestInfo(path=path, verb=method.lower())
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        if len(parts) < 3:
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]

    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    # As on a real server, /api/v1/namespaces/{name} carries namespace={name}: a RoleBinding in that
    # namespace can grant access to it, and a 403 names it "in the namespace".
    # KubeVirt's subresources can be two segments deep (vnc/screenshot); the RBAC resource keeps both.
    # Except portforward: its port and protocol are not subject to RBAC (virt-api's authorizer.go), so
    # the subresource is `portforward` and they stay in `subresource_args`.
    subresource, subresource_args = (rest[2] if len(rest) > 2 else ""), ()
    if group == SUBRESOURCES_GROUP:
        if subresource == "portforward":
            subresource_args = tuple(rest[3:])
        else:
            subresource = "/".join(rest[2:])

    method = method.upper()
    if method in ("GET", "HEAD"):
        verb = "get" if name else ("watch" if _is_true(query.get("watch")) else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return RequestInfo(
        path=path,
        verb=verb,
        resource_request=True,
        group=group,
        version=version,
        namespace=namespace,
        resource=resource,
        name=name,
        subresource=subresource,
        subresource_args=subresource_args,
    )
