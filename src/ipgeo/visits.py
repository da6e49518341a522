"""The per-client-IP visit counter kept in Redis."""

from __future__ import annotations

import ipaddress
from typing import Any

import redis

from ipgeo.clientip import client_key
from ipgeo.redisstore import RedisGuard

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

KEY_PREFIX = "visits:"


def visit_key(ip: IPAddress, ipv6_prefix: int = 64) -> str:
    """The Redis key of ``ip``'s counter: ``visits:`` and the client key (``clientip``).

    An IPv4 address (also IPv4-mapped) keeps its key ``visits:192.0.2.7``; an IPv6 address
    counts by its ``/ipv6_prefix`` network (``visits:2001:db8:1:2::/64``).
    """
    return f"{KEY_PREFIX}{client_key(ip, ipv6_prefix)}"


class VisitCounter:
    """Counts visits per client (``IPGEO_CLIENT_IPV6_PREFIX``) with an atomic ``INCR``."""

    def __init__(
        self, client: redis.Redis, guard: RedisGuard, ttl: int = 0, ipv6_prefix: int = 64
    ) -> None:
        self.client = client
        self.guard = guard
        self.ttl = ttl
        self.ipv6_prefix = ipv6_prefix

    def hit(self, ip: IPAddress) -> int | None:
        """Count one visit of ``ip`` and return the new total; ``None`` when Redis is down."""
        if not self.guard.available():
            return None
        key = visit_key(ip, self.ipv6_prefix)
        try:
            if self.ttl:
                pipe = self.client.pipeline(transaction=True)
                pipe.incr(key)
                pipe.expire(key, self.ttl)
                count = int(pipe.execute()[0])
            else:
                # Any: redis-py 7 types replies as maybe-awaitable, redis-py 8 as int
                reply: Any = self.client.incr(key)
                count = int(reply)
        except redis.RedisError as exc:
            self.guard.failed("the visit counter", exc)
            return None
        self.guard.succeeded()
        return count

    def get(self, ip: IPAddress) -> int:
        """The current count of ``ip`` (0 when never seen); raises ``redis.RedisError``."""
        value: Any = self.client.get(visit_key(ip, self.ipv6_prefix))
        return int(value) if value is not None else 0
