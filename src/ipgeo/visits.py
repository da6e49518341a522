"""The per-client-IP visit counter kept in Redis."""

from __future__ import annotations

import ipaddress
from typing import Any

import redis

from ipgeo.redisstore import RedisGuard

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

KEY_PREFIX = "visits:"


def visit_key(ip: IPAddress) -> str:
    """The Redis key of ``ip``'s counter (IPv4-mapped IPv6 counts as the IPv4 address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"{KEY_PREFIX}{ip.compressed}"


class VisitCounter:
    """Counts visits per client IP with an atomic ``INCR`` (and an optional idle expiry)."""

    def __init__(self, client: redis.Redis, guard: RedisGuard, ttl: int = 0) -> None:
        self.client = client
        self.guard = guard
        self.ttl = ttl

    def hit(self, ip: IPAddress) -> int | None:
        """Count one visit of ``ip`` and return the new total; ``None`` when Redis is down."""
        if not self.guard.available():
            return None
        key = visit_key(ip)
        try:
            if self.ttl:
                pipe = self.client.pipeline(transaction=True)
                pipe.incr(key)
                pipe.expire(key, self.ttl)
                count = int(pipe.execute()[0])
            else:
                # ``Any``: redis-py's annotations of these calls differ between versions
                counted: Any = self.client.incr(key)
                count = int(counted)
        except redis.RedisError as exc:
            self.guard.failed("the visit counter", exc)
            return None
        self.guard.succeeded()
        return count

    def get(self, ip: IPAddress) -> int:
        """The current count of ``ip`` (0 when never seen); raises ``redis.RedisError``."""
        value: Any = self.client.get(visit_key(ip))
        return int(value) if value is not None else 0
