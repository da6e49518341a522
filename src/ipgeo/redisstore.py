"""Connecting to Redis with short timeouts, and tracking whether it is reachable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("ipgeo.redis")

# A dead Redis must not stall requests: fail fast, never retry inside a request.
CONNECT_TIMEOUT = 0.25
COMMAND_TIMEOUT = 0.5


def connection_pool(url: str) -> redis.ConnectionPool:
    """A connection pool for ``url`` with short timeouts and no retries."""
    return redis.ConnectionPool.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


def limits_storage_uri(url: str) -> str:
    """The ``limits`` storage URI for a Redis URL (it spells unix sockets ``redis+unix://``)."""
    return "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url


class RedisGuard:
    """Remembers Redis failures: skips Redis for a moment after one and warns once per interval.

    While Redis is down every caller would otherwise pay a connection attempt (or a timeout) and
    log a warning per request; instead callers ask ``available()`` and report ``failed()``.
    """

    def __init__(
        self,
        client: redis.Redis,
        retry_after: float = 1.0,
        warn_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.retry_after = retry_after
        self.warn_interval = warn_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False
        self._last_warning: dict[str, float] = {}

    def available(self) -> bool:
        """False for ``retry_after`` seconds after a failure, so requests do not wait on Redis."""
        return self._clock() >= self._down_until

    def failed(self, feature: str, error: BaseException) -> None:
        """Record a failure of ``feature``; log a warning at most once per ``warn_interval``."""
        now = self._clock()
        with self._lock:
            self._down = True
            self._down_until = now + self.retry_after
            last = self._last_warning.get(feature)
            if last is not None and now - last < self.warn_interval:
                return
            self._last_warning[feature] = now
        log.warning(
            "Redis unavailable (%s: %s): visit counts are omitted and rate limits not enforced "
            "until it returns; this warning repeats at most every %ds",
            feature,
            error,
            int(self.warn_interval),
        )

    def succeeded(self) -> None:
        """Record a successful call; logs once when Redis comes back."""
        if self._down:
            with self._lock:
                if not self._down:
                    return
                self._down = False
                self._last_warning.clear()
            log.warning("Redis is reachable again")

    def check(self) -> dict[str, object]:
        """Readiness: ``ok`` when Redis answers PING, ``degraded`` otherwise (never ``down``)."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self.failed("readiness check", exc)
            return {"status": "degraded", "error": str(exc) or type(exc).__name__}
        self.succeeded()
        return {"status": "ok"}
