"""Discovery documents: what `/api`, `/apis`, group and group/version paths return on a real server."""

from __future__ import annotations

import datetime
from typing import Any

from localcluster.resources import (
    GROUP_VERSIONS,
    SUBRESOURCES_GROUP,
    VMI_SUBRESOURCES,
    ResourceType,
    resources_in,
)


def version_info() -> dict[str, str]:
    return {
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.0+localcluster",
        "gitCommit": "localcluster",
        "gitTreeState": "clean",
        "buildDate": datetime.date.today().isoformat() + "T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _api_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    group_version = f"{group}/{version}" if group else version
    if group == SUBRESOURCES_GROUP and version in ("v1", "v1alpha3"):
        # virt-api lists its subresources without kinds; verbs say how each is called.
        resources = [
            {
                "name": f"virtualmachineinstances/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": "",
                "verbs": ["get" if method == "GET" else "update"],
            }
            for sub, method in VMI_SUBRESOURCES.items()
        ]
    else:
        types = resources_in(group, version)
        if not types:
            return None
        resources = []
        for rt in types:
            resources.append(_api_resource(rt))
            resources += [
                {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"] if sub == "status" else ["update"],
                }
                for sub in rt.subresources
            ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _group(name: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in GROUP_VERSIONS if g == name]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def document(path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery document for a path, or None when it is not a discovery path."""
    parts = [p for p in path.split("/") if p]
    if parts == ["version"]:
        return version_info()
    if parts == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    if parts == ["api", "v1"]:
        return resource_list("", "v1")
    if parts == ["apis"]:
        groups = list(dict.fromkeys(g for g, _ in GROUP_VERSIONS))
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if len(parts) == 2 and parts[0] == "apis" and any(g == parts[1] for g, _ in GROUP_VERSIONS):
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1])}
    if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in GROUP_VERSIONS:
        return resource_list(parts[1], parts[2])
    return None
