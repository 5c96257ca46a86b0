"""Injected faults (off by default) and the call log, driven through `local_cluster.faults`."""

from __future__ import annotations

import asyncio
import time

import pytest
import urllib3
from kubernetes import client, watch

from localcluster.faults import CALL_LOG_LIMIT, Faults
from tests.localcluster.lc_helpers import small_vmi, status_of
from tests.localcluster.test_websockets import connect


def test_no_faults_by_default(local_cluster):
    state = local_cluster.faults.describe()
    assert state["latency_ms"] == 0
    assert state["fail"] == state["hang"] == state["late_commit"] == []
    assert state["drop_watch"] == state["drop_websocket"] == []


def test_fail_answers_the_status_once_and_changes_nothing(local_cluster, core, ns):
    local_cluster.faults.fail("create", "secrets", status=500, times=1)
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    assert err.value.status == 500
    assert status_of(err.value)["reason"] == "InternalError"
    assert core.list_namespaced_secret(ns).items == []
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})  # the next one is served


def test_fail_can_target_a_subresource_and_repeat(local_cluster, vmis, ns, admin_api):
    from tests.localcluster.lc_helpers import vmi_subresource

    vmis.create(ns, small_vmi("v"))
    vmis.running(ns, "v")
    local_cluster.faults.fail("update", "virtualmachineinstances/pause", status=504, times=None)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            vmi_subresource(admin_api, ns, "v", "pause")
        assert err.value.status == 504
    local_cluster.faults.clear()
    vmi_subresource(admin_api, ns, "v", "pause")


def test_hang_delays_the_call_past_a_client_timeout(local_cluster, core, ns):
    local_cluster.faults.hang("get", "namespaces", seconds=1.0, times=None)
    # The client retries a read timeout a few times, then gives up.
    with pytest.raises((urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError)):
        core.read_namespace(ns, _request_timeout=0.2)
    local_cluster.faults.clear()
    started = time.monotonic()
    core.read_namespace(ns, _request_timeout=2)
    assert time.monotonic() - started < 0.5


def test_a_hanging_create_whose_client_gave_up_creates_nothing(local_cluster, core, ns):
    local_cluster.faults.hang("create", "secrets", seconds=0.5)
    local_cluster.faults.reset_calls()
    with pytest.raises((urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError)):
        core.create_namespaced_secret(ns, {"metadata": {"name": "abandoned"}}, _request_timeout=0.1)

    time.sleep(1.0)  # well past the hang: nothing is created by then
    assert core.list_namespaced_secret(ns).items == []


def test_late_commit_creates_the_object_after_the_client_gave_up(local_cluster, core, ns):
    # asyncFinisher (k8s.io/apiserver/pkg/endpoints/handlers/finisher/finisher.go) answers the client
    # a timeout while the goroutine running the storage call goes on and may still commit.
    local_cluster.faults.late_commit("create", "secrets", seconds=0.5)
    local_cluster.faults.reset_calls()
    with pytest.raises((urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError)):
        core.create_namespaced_secret(ns, {"metadata": {"name": "late"}}, _request_timeout=0.1)
    assert core.list_namespaced_secret(ns).items == []

    deadline = time.monotonic() + 10
    while not core.list_namespaced_secret(ns).items:
        assert time.monotonic() < deadline, "the late create never happened"
        time.sleep(0.05)
    assert [s.metadata.name for s in core.list_namespaced_secret(ns).items] == ["late"]
    creates = [c for c in local_cluster.faults.calls() if c["verb"] == "create"]
    assert [c["status"] for c in creates] == [201]


def test_late_commit_answers_a_client_that_waits(local_cluster, core, ns):
    local_cluster.faults.late_commit("create", "secrets", seconds=0.3)
    started = time.monotonic()

    created = core.create_namespaced_secret(ns, {"metadata": {"name": "patient"}}, _request_timeout=5)

    assert created.metadata.name == "patient"
    assert time.monotonic() - started >= 0.3


def test_latency_applies_to_every_request(local_cluster, core, ns):
    local_cluster.faults.latency(ms=200)
    started = time.monotonic()
    core.read_namespace(ns)
    assert time.monotonic() - started >= 0.2
    local_cluster.faults.latency(ms=0)


def test_drop_watch_cuts_the_stream_without_a_clean_end(local_cluster, core, ns):
    for name in ("a", "b", "c"):
        core.create_namespaced_secret(ns, {"metadata": {"name": name}})
    local_cluster.faults.drop_watch("secrets", after_events=2)
    seen = []
    with pytest.raises((urllib3.exceptions.ProtocolError, client.ApiException)):
        for event in watch.Watch().stream(core.list_namespaced_secret, ns, timeout_seconds=5):
            seen.append(event["object"].metadata.name)
    assert seen == ["a", "b"]


async def test_drop_websocket_cuts_the_console_after_some_bytes(local_cluster, vmis, ns):
    vmis.create(ns, small_vmi("v"))
    vmis.running(ns, "v")
    local_cluster.faults.drop_websocket(kind="console", after_bytes=10)
    async with connect(local_cluster, ns, "v") as ws:
        received = b""
        with pytest.raises(Exception):  # noqa: B017 - a cut connection surfaces as ConnectionClosed
            async with asyncio.timeout(3):
                while True:
                    received += await ws.recv()
        assert received == b"localclust"


def test_calls_records_what_the_client_asked(local_cluster, core, vmis, ns):
    local_cluster.faults.reset_calls()
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    vmis.create(ns, small_vmi("v"))
    with pytest.raises(client.ApiException):
        core.read_namespaced_secret("missing", ns)
    calls = local_cluster.faults.calls()
    assert calls == [
        {
            "verb": "create",
            "resource": "secrets",
            "namespace": ns,
            "name": "",
            "subresource": "",
            "status": 201,
        },
        {
            "verb": "create",
            "resource": "virtualmachineinstances",
            "namespace": ns,
            "name": "",
            "subresource": "",
            "status": 201,
        },
        {
            "verb": "get",
            "resource": "secrets",
            "namespace": ns,
            "name": "missing",
            "subresource": "",
            "status": 404,
        },
    ]
    local_cluster.faults.reset_calls()
    assert local_cluster.faults.calls() == []


def test_the_control_api_is_for_admin_only(local_cluster):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        local_cluster.url + "/localcluster/v1/faults",
        headers={"Authorization": f"Bearer {local_cluster.token('laborchestrator')}"},
        method="DELETE",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=local_cluster.ssl_context())
    assert err.value.code == 403


def test_the_call_log_keeps_the_most_recent_calls_only():
    faults = Faults()
    for index in range(CALL_LOG_LIMIT + 5):
        faults.calls.append({"verb": "get", "name": str(index)})
    assert len(faults.calls) == CALL_LOG_LIMIT
    assert faults.calls[0]["name"] == "5"
    assert faults.calls[-1]["name"] == str(CALL_LOG_LIMIT + 4)


def test_a_slow_pause_condition_is_set_described_refused_when_out_of_range_and_cleared(local_cluster):
    local_cluster.faults.slow_pause_condition(ms=2500)
    assert local_cluster.faults.describe()["pause_condition_delay_ms"] == 2500
    with pytest.raises(RuntimeError, match="400"):
        local_cluster.faults.slow_pause_condition(ms=-1)
    local_cluster.faults.clear()
    assert local_cluster.faults.describe()["pause_condition_delay_ms"] is None
