"""Bad input answers the status codes a real API server gives, and never takes the server down."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from kubernetes import client


def raw(
    cluster,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    identity: str | None = "admin",
) -> tuple[int, dict]:
    headers = {"Content-Type": content_type}
    if identity:
        headers["Authorization"] = f"Bearer {cluster.token(identity)}"
    request = urllib.request.Request(cluster.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=cluster.ssl_context(), timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_malformed_json_is_400(local_cluster, ns):
    code, status = raw(local_cluster, "POST", f"/api/v1/namespaces/{ns}/secrets", b"{not json")
    assert (code, status["reason"], status["kind"]) == (400, "BadRequest", "Status")


def test_a_body_that_is_not_an_object_is_400(local_cluster, ns):
    code, _ = raw(local_cluster, "POST", f"/api/v1/namespaces/{ns}/secrets", b"[1, 2]")
    assert code == 400


def test_a_kind_that_does_not_match_the_path_is_400(local_cluster, ns):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).encode()
    code, _ = raw(local_cluster, "POST", f"/api/v1/namespaces/{ns}/secrets", body)
    assert code == 400


def test_unknown_paths_are_404(local_cluster):
    for path in ("/nothing", "/api/v1/widgets", "/apis/example.com/v1/things", "/api/v2/namespaces"):
        code, status = raw(local_cluster, "GET", path)
        assert code == 404, path
        assert status["reason"] == "NotFound"


def test_wrong_methods_are_405(local_cluster, ns):
    assert raw(local_cluster, "POST", f"/api/v1/namespaces/{ns}/secrets/x", b"{}")[0] == 405
    assert raw(local_cluster, "PUT", f"/api/v1/namespaces/{ns}/secrets", b"{}")[0] == 405
    vmi_path = f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/v/pause"
    assert raw(local_cluster, "GET", vmi_path)[0] == 405


def test_bodies_over_3_mib_are_413(local_cluster, ns):
    big = json.dumps({"metadata": {"name": "big"}, "stringData": {"k": "x" * (3 * 1024 * 1024)}}).encode()
    code, status = raw(local_cluster, "POST", f"/api/v1/namespaces/{ns}/secrets", big)
    assert code == 413
    assert status["reason"] == "RequestEntityTooLarge"


def test_bad_selectors_are_400(core, ns):
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_secret(ns, label_selector="a in (b")
    assert err.value.status == 400
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_secret(ns, field_selector="spec.nothing=1")
    assert err.value.status == 400


def test_unsupported_patch_type_is_415(local_cluster, ns, core):
    core.create_namespaced_secret(ns, {"metadata": {"name": "p"}})
    code, _ = raw(
        local_cluster, "PATCH", f"/api/v1/namespaces/{ns}/secrets/p", b"{}", content_type="text/plain"
    )
    assert code == 415


def test_json_patch_is_supported(local_cluster, ns, core):
    core.create_namespaced_secret(ns, {"metadata": {"name": "j", "labels": {"a": "1"}}})
    patch = json.dumps([{"op": "replace", "path": "/metadata/labels/a", "value": "2"}]).encode()
    code, obj = raw(
        local_cluster,
        "PATCH",
        f"/api/v1/namespaces/{ns}/secrets/j",
        patch,
        content_type="application/json-patch+json",
    )
    assert (code, obj["metadata"]["labels"]) == (200, {"a": "2"})


def test_no_token_is_anonymous_and_forbidden_but_may_read_the_version(local_cluster):
    assert raw(local_cluster, "GET", "/api/v1/namespaces", identity=None)[0] == 403
    code, version = raw(local_cluster, "GET", "/version", identity=None)
    assert (code, version["major"]) == (200, "1")


def test_the_server_certificate_must_be_verified(local_cluster):
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(
            local_cluster.url + "/version", context=ssl.create_default_context(), timeout=5
        )
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


def test_the_server_survives_all_of_the_above(core):
    assert core.read_namespace("default").status.phase == "Active"
