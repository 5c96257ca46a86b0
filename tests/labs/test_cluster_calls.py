"""The one module that calls the cluster refuses to let the server drop parts of our manifests."""

import uuid

import pytest

from labs import cluster, manifests
from labs.exceptions import ClusterError


def test_a_manifest_with_an_unknown_field_is_refused_not_silently_trimmed(app_cluster):
    namespace = f"strict-{uuid.uuid4().hex[:8]}"
    labels = {manifests.MANAGED_BY_LABEL: manifests.MANAGED_BY}
    cluster.create_namespace(manifests.make_namespace(name=namespace, labels=labels))
    try:
        cluster.create_objects(
            [
                manifests.make_role_binding(
                    namespace=namespace,
                    labels=labels,
                    service_account_namespace="laborchestrator",
                    service_account_name="laborchestrator",
                )
            ]
        )
        misspelt = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": namespace},
            "spec": {
                "domain": {"memory": {"guest": "128Mi"}, "devices": {"disks": [{"name": "ci"}]}},
                # KubeVirt's Go field name; the JSON name is `secretRef`.
                "volumes": [{"name": "ci", "cloudInitNoCloud": {"userDataSecretRef": {"name": "s"}}}],
            },
        }
        with pytest.raises(ClusterError, match="unknown field"):
            cluster.create_objects([misspelt])
    finally:
        cluster.delete_namespace(namespace)
