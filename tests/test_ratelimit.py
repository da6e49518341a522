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
