"""The upstream websocket verifies the API server's certificate, as every other cluster call does:
a kubeconfig that trusts another CA, or names another host, gets no console (4503), not a relay
to whoever answers."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from labs import cluster
from localcluster.tls import generate
from vncproxy.upstream import UpstreamUnavailable, open_upstream

pytestmark = pytest.mark.django_db(transaction=True)


def kubeconfig_with(local_cluster, tmp_path, **cluster_fields) -> str:
    config = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"].update(cluster_fields)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def point_at(settings):
    """Point the application at another kubeconfig for the test body only: the instance fixture's
    teardown (stopping the instance) must find the real one again."""
    original = settings.KUBECONFIG

    def point(kubeconfig: str) -> None:
        settings.KUBECONFIG = kubeconfig
        cluster.reset_client()

    yield point
    settings.KUBECONFIG = original
    cluster.reset_client()


async def test_a_certificate_from_another_ca_is_refused(app_cluster, instance, tmp_path, point_at):
    (tmp_path / "other-ca").mkdir()
    other = generate(tmp_path / "other-ca")
    point_at(
        kubeconfig_with(
            app_cluster,
            tmp_path,
            **{"certificate-authority-data": base64.b64encode(other.ca_cert.read_bytes()).decode()},
        )
    )
    with pytest.raises(UpstreamUnavailable) as refused:
        await open_upstream(namespace=instance.namespace, name="vm0", kind="serial")
    assert "SSLCertVerificationError" in refused.value.message


async def test_a_certificate_for_another_host_name_is_refused(app_cluster, instance, tmp_path, point_at):
    point_at(kubeconfig_with(app_cluster, tmp_path, **{"tls-server-name": "api.example.org"}))
    with pytest.raises(UpstreamUnavailable) as refused:
        await open_upstream(namespace=instance.namespace, name="vm0", kind="serial")
    assert "SSLCertVerificationError" in refused.value.message


async def test_the_right_ca_and_name_open_the_console(app_cluster, instance):
    connection = await open_upstream(namespace=instance.namespace, name="vm0", kind="serial")
    connection.close()
