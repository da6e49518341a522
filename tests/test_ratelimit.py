"""The rate limiter's numbers are ``limits``' own, in Redis (one script call) and in memory."""

from __future__ import annotations

import time

import pytest
import redis
from limits import parse_many
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from ipgeo.web.ratelimit import RateLimiter

SPEC = "4/minute;6/hour"


@pytest.fixture(params=["redis", "memory"])
def limiter_and_library(
    request: pytest.FixtureRequest, redis_url: str
) -> tuple[RateLimiter, SlidingWindowCounterRateLimiter | None]:
    if request.param == "memory":
        return RateLimiter(SPEC, None), None
    limiter = RateLimiter(SPEC, redis.ConnectionPool.from_url(redis_url))
    return limiter, SlidingWindowCounterRateLimiter(RedisStorage(redis_url))


def test_outcomes_follow_the_sliding_windows(
    limiter_and_library: tuple[RateLimiter, SlidingWindowCounterRateLimiter | None],
) -> None:
    limiter, library = limiter_and_library
    minute, hour = parse_many(SPEC)
    outcomes = [limiter.charge("203.0.113.9") for _ in range(6)]
    assert [outcome.breached for outcome in outcomes] == [False] * 4 + [True] * 2
    assert [outcome.remaining for outcome in outcomes] == [3, 2, 1, 0, 0, 0]
    assert [outcome.checked for outcome in outcomes] == [(minute, hour)] * 4 + [(minute,)] * 2
    now = time.time()
    refused = outcomes[-1].headers(now)
    assert dict(refused)["RateLimit-Policy"] == "4;w=60"
    assert 1 <= int(dict(refused)["Retry-After"]) <= 61
    if library is not None:  # the same keys and counts as the library's own calls
        assert library.get_window_stats(hour, "ipgeo", "203.0.113.9", "global").remaining == 2
        stats = library.get_window_stats(minute, "ipgeo", "203.0.113.9", "global")
        assert stats.remaining == outcomes[-1].remaining == 0
    assert now - 1 <= outcomes[-1].reset_at <= now + 60
    other = limiter.charge("203.0.113.10", cost=4)
    assert (other.breached, other.remaining) == (False, 0)
    assert limiter.charge("203.0.113.11", cost=5).breached  # more than the limit at once


@pytest.mark.parametrize("processes", [1, 3])
def test_leases_never_let_a_client_past_its_limit(redis_url: str, processes: int) -> None:
    # each limiter stands for one server process; they share the counts in Redis
    limiters = [
        RateLimiter("1280/minute;100000/hour", redis.ConnectionPool.from_url(redis_url))
        for _ in range(processes)
    ]
    client = f"198.51.100.{processes}"
    accepted = calls = 0
    refusals_in_a_row = 0
    while refusals_in_a_row < 2 * processes:
        outcome = limiters[calls % processes].charge(client)
        calls += 1
        refusals_in_a_row = refusals_in_a_row + 1 if outcome.breached else 0
        accepted += not outcome.breached
    assert accepted == 1280  # every unit claimed ahead was spent: the limit exactly
    assert all(limiter.leases[client].left == 0 for limiter in limiters)


def test_a_quiet_client_claims_nothing_ahead(redis_url: str) -> None:
    limiter = RateLimiter("100000/minute", redis.ConnectionPool.from_url(redis_url))
    limiter.lease_seconds = 0.0  # every lease has expired by the next request
    outcomes = [limiter.charge("192.0.2.77") for _ in range(5)]
    assert [outcome.remaining for outcome in outcomes] == [99999, 99998, 99997, 99996, 99995]
    assert limiter.leases["192.0.2.77"].spare == 0
    library = SlidingWindowCounterRateLimiter(RedisStorage(redis_url))
    minute = parse_many("100000/minute")[0]
    assert library.get_window_stats(minute, "ipgeo", "192.0.2.77", "global").remaining == 99995
