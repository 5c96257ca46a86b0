"""Sliding-window rate limits that hold under parallel requests, in this process and in Redis.

The Redis tests need a Redis server on 127.0.0.1:6379 (Debian: redis-server); they use its
database 11 and empty it before and after.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from laborchestrator.ratelimit import Limit, LocalRateStore, Rate, RateLimited, RedisRateStore, take_place
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def redis_store():
    require_service(lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping(), "Redis", "redis-server")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield RedisRateStore(REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(params=["local", "redis"])
def store(request):
    return LocalRateStore() if request.param == "local" else request.getfixturevalue("redis_store")


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/hour", Rate(30, 3600)),
        ("60/minute", Rate(60, 60)),
        ("10/15min", Rate(10, 900)),
        ("5/30s", Rate(5, 30)),
        ("2/day", Rate(2, 86400)),
        (" 3 / 2 minutes ", Rate(3, 120)),
    ],
)
def test_rates_are_read_as_drf_writes_them_and_with_a_multiple(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "ten/hour", "5/fortnight", "5"])
def test_a_malformed_rate_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="Write <count>/<period>"):
        Rate.parse(text)


def test_a_window_allows_its_count_then_says_how_long_to_wait(store):
    limit = Limit(key="k", rate=Rate(3, 60))
    assert [store.take([limit], f"m{i}") for i in range(3)] == [0, 0, 0]
    wait = store.take([limit], "m3")
    assert 59 < wait <= 60


def test_the_window_slides(store):
    limit = Limit(key="k", rate=Rate(2, 1))
    assert store.take([limit], "a") == 0
    time.sleep(0.5)
    assert store.take([limit], "b") == 0
    assert 0.3 < store.take([limit], "c") <= 0.5 + 0.05  # until "a" leaves the window
    deadline = time.monotonic() + 5
    while store.take([limit], "c") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert store.take([limit], "d") > 0  # "b" and "c" fill it again


def test_a_place_given_back_is_free_again(store):
    limit = Limit(key="k", rate=Rate(1, 60))
    assert store.take([limit], "a") == 0
    store.remove(["k"], "a")
    assert store.take([limit], "b") == 0


def test_several_limits_count_all_or_nothing(store):
    user, address = Limit(key="user", rate=Rate(5, 60)), Limit(key="address", rate=Rate(2, 60))
    assert store.take([user, address], "a") == 0
    assert store.take([user, address], "b") == 0
    assert store.take([user, address], "c") > 0  # the address is full: the user's count is not touched
    for member in "def":
        assert store.take([user], member) == 0
    assert store.take([user], "g") > 0


def test_parallel_takes_never_pass_more_than_the_rate(store):
    limit = Limit(key="k", rate=Rate(30, 3600))
    barrier = threading.Barrier(20)

    def take(index: int) -> bool:
        if index < 20:
            barrier.wait()
        return store.take([limit], f"m{index}") == 0

    with ThreadPoolExecutor(max_workers=20) as pool:
        passed = sum(pool.map(take, range(100)))
    assert passed == 30


def test_two_redis_clients_share_the_counts(redis_store):
    other = RedisRateStore(REDIS_URL)
    limit = Limit(key="k", rate=Rate(2, 60))
    assert redis_store.take([limit], "a") == 0
    assert other.take([limit], "b") == 0
    assert redis_store.take([limit], "c") > 0
    assert other.take([limit], "c") > 0


def test_take_place_raises_with_the_wait_and_counts_nothing_when_refused(settings):
    settings.REDIS_URL = ""
    limit = Limit(key="take-place", rate=Rate(1, 60))
    place = take_place([limit])
    with pytest.raises(RateLimited) as refused:
        take_place([limit])
    assert 59 < refused.value.wait <= 60
    assert refused.value.message == "Too many requests. Try again in 1 minute."
    place.give_back()
    take_place([limit])
