"""Watch conformance: the local cluster's watches behave like the API server's watch cache, which is
what a real cluster serves watches from (kubernetes/kubernetes,
staging/src/k8s.io/apiserver/pkg/storage/cacher/: watch_cache.go, cache_watcher.go, cacher.go).

- a resourceVersion older than the history kept answers an ERROR event with a Status of code 410,
  reason Expired, "too old resource version: N (M)" (watch_cache.go, getAllEventsSinceLocked);
- a resourceVersion still in the history replays exactly the later events;
- with allowWatchBookmarks, a BOOKMARK carrying only kind and resourceVersion arrives 2 s before the
  watch's deadline (cache_watcher.go, nextBookmarkTime), never without it;
- the watch ends cleanly at timeoutSeconds.

A server of its own with 3 events of history, so "too old" is reachable in a few writes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, watch

from localcluster.harness import LocalCluster, start_local_cluster


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_local_cluster(tmp_path_factory.mktemp("lc"), extra_args=("--watch-history", "3")) as lc:
        yield lc


@pytest.fixture
def core(short_history) -> client.CoreV1Api:
    return client.CoreV1Api(short_history.api_client("admin"))


def raw_watch(core: client.CoreV1Api, **params) -> tuple[int, list[dict], float]:
    """The watch's HTTP status, its events as sent (no client-side handling), and its duration."""
    started = time.monotonic()
    response = core.list_namespace(watch=True, _preload_content=False, **params)
    lines = [line for line in response.read().decode().splitlines() if line.strip()]
    return response.status, [json.loads(line) for line in lines], time.monotonic() - started


def make_namespaces(core: client.CoreV1Api, count: int) -> list[str]:
    names = [f"w-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        core.create_namespace({"metadata": {"name": name, "labels": {"watch-test": "yes"}}})
    return names


def test_a_too_old_resource_version_answers_410_expired(core):
    first = core.list_namespace().metadata.resource_version
    make_namespaces(core, 5)  # more writes than the 3 events kept
    status, events, _ = raw_watch(core, resource_version=first, timeout_seconds=5)
    assert status == 200  # the error is the stream's one event, as the watch cache sends it
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    error = events[0]["object"]
    assert (error["kind"], error["code"], error["reason"]) == ("Status", 410, "Expired")
    assert error["message"].startswith(f"too old resource version: {first} (")


def test_the_client_raises_410_so_the_caller_relists(core):
    first = core.list_namespace().metadata.resource_version
    make_namespaces(core, 5)
    with pytest.raises(client.ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespace, resource_version=first, timeout_seconds=2):
            pass
    assert err.value.status == 410


def test_a_resource_version_in_the_history_replays_only_later_events(core):
    names = make_namespaces(core, 2)
    since = core.read_namespace(names[0]).metadata.resource_version
    _, events, _ = raw_watch(core, resource_version=since, label_selector="watch-test=yes", timeout_seconds=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", names[1])]


def test_bookmarks_arrive_before_the_deadline_when_asked_for(core):
    rv = core.list_namespace().metadata.resource_version
    status, events, took = raw_watch(core, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=3)
    assert status == 200
    assert [e["type"] for e in events] == ["BOOKMARK"]
    bookmark = events[0]["object"]
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("Namespace", "v1")
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(rv)
    assert set(bookmark["metadata"]) <= {"resourceVersion", "creationTimestamp"}  # nothing else
    assert 2.5 < took < 6  # the watch still runs to its timeout after the bookmark


def test_the_client_resumes_from_a_bookmark(core):
    rv = core.list_namespace().metadata.resource_version
    w = watch.Watch()
    stream = w.stream(core.list_namespace, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=3)
    seen = list(stream)
    assert [e["type"] for e in seen] == ["BOOKMARK"]
    assert int(w.resource_version) >= int(rv)


def test_no_bookmarks_unless_asked_for(core):
    rv = core.list_namespace().metadata.resource_version
    _, events, _ = raw_watch(core, resource_version=rv, timeout_seconds=3)
    assert events == []


def test_a_watch_shorter_than_two_seconds_gets_no_bookmark(core):
    rv = core.list_namespace().metadata.resource_version
    _, events, _ = raw_watch(core, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=1)
    assert events == []


def test_the_watch_ends_at_its_timeout(core):
    rv = core.list_namespace().metadata.resource_version
    status, events, took = raw_watch(core, resource_version=rv, timeout_seconds=2)
    assert (status, events) == (200, [])
    assert 1.9 < took < 4


def test_a_bad_allow_watch_bookmarks_is_a_400(core):
    api = core.api_client
    request = api.param_serialize(
        "GET",
        "/api/v1/namespaces",
        query_params=[("watch", "true"), ("allowWatchBookmarks", "maybe")],
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    body = json.loads(response.read())
    assert (response.status, body["reason"]) == (400, "BadRequest")
