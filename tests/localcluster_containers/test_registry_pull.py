"""Pods' images pulled from a registry with the images issue's puller (skopeo, cache by digest),
unpacked by umoci: the tools image pushed to Debian's docker-registry on loopback, anonymous and
with a pull Secret; a missing tag is ErrImagePull with the kubelet's wording."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from localcluster.containers import toolsimage
from localcluster.harness import start_local_cluster
from tests.localcluster_containers.container_helpers import missing, new_namespace, pod, running, wait_for


@pytest.fixture(scope="module")
def tools_layout(tmp_path_factory):
    if reason := missing():
        pytest.skip(reason)
    return toolsimage.build(tmp_path_factory.mktemp("tools-layout"), tag="1")


@pytest.fixture(scope="module")
def registry_cluster(tmp_path_factory, tools_layout):
    # No --container-images: every image comes from its registry.
    with start_local_cluster(tmp_path_factory.mktemp("registry-pulls")) as server:
        yield server


def test_an_image_from_the_registry_runs(oci_registry, tools_layout, registry_cluster):
    digest = oci_registry.push_layout(tools_layout, "labs/tools:1", tag="1")
    api = client.CoreV1Api(registry_cluster.api_client("admin"))
    ns = new_namespace(api)
    api.create_namespaced_pod(
        ns,
        pod(
            "pulled", ["sh", "-c", "echo pulled-ok; sleep 1000"], image=oci_registry.reference("labs/tools:1")
        ),
    )
    wait_for(api, ns, "pulled", running, timeout=60)
    wait_for(api, ns, "pulled", lambda _p: "pulled-ok" in api.read_namespaced_pod_log("pulled", ns))
    assert digest.startswith("sha256:")
    reasons = [e.reason for e in api.list_namespaced_event(ns).items if e.involved_object.name == "pulled"]
    assert {"Scheduled", "Pulling", "Pulled", "Started"} <= set(reasons), reasons
    # By digest too, from the cache.
    api.create_namespaced_pod(
        ns, pod("pinned", ["sleep", "1000"], image=oci_registry.reference(f"labs/tools@{digest}"))
    )
    wait_for(api, ns, "pinned", running, timeout=60)


def test_a_private_image_needs_the_pull_secret(start_oci_registry, tools_layout, registry_cluster):
    registry = start_oci_registry(users={"ann": "s3cret"})
    registry.push_layout(tools_layout, "private/tools:1", tag="1")
    api = client.CoreV1Api(registry_cluster.api_client("admin"))
    ns = new_namespace(api)
    config = base64.b64encode(json.dumps(registry.credentials("ann")).encode()).decode()
    api.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": config},
        },
    )
    image = registry.reference("private/tools:1")
    anonymous = pod("anonymous", ["sleep", "1000"], image=image)
    api.create_namespaced_pod(ns, anonymous)
    with_secret = pod("allowed", ["sleep", "1000"], image=image, imagePullSecrets=[{"name": "pull"}])
    api.create_namespaced_pod(ns, with_secret)
    wait_for(api, ns, "allowed", running, timeout=60)
    refused = wait_for(
        api,
        ns,
        "anonymous",
        lambda p: (
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
        ),
    )
    assert (
        "rpc error" in refused.status.container_statuses[0].state.waiting.message
        or refused.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    )


def test_a_tag_the_registry_lacks_is_err_image_pull(oci_registry, registry_cluster):
    api = client.CoreV1Api(registry_cluster.api_client("admin"))
    ns = new_namespace(api)
    image = oci_registry.reference("labs/none:9")
    api.create_namespaced_pod(ns, pod("ghost", image=image))
    p = wait_for(
        api,
        ns,
        "ghost",
        lambda p: (
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason == "ErrImagePull"
        ),
        timeout=60,
    )
    assert "not found" in p.status.container_statuses[0].state.waiting.message
