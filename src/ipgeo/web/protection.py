"""The allowlist, per-client rate limits and the Redis they and the visit counter use."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import redis
from flask import Flask

from ipgeo.allowlist import IPAddress, in_networks, is_allowed
from ipgeo.clientip import client_key
from ipgeo.redisstore import RedisGuard, connection_pool
from ipgeo.settings import Settings
from ipgeo.visits import VisitCounter
from ipgeo.web.errors import ApiError, error_page_wanted, prefers_html
from ipgeo.web.exchange import BoundedTable, Exchange
from ipgeo.web.ratelimit import RateLimiter, RateLimitOutcome

log = logging.getLogger("ipgeo.web")

# Probes and static files are never blocked or rate limited.
OPEN_ENDPOINTS = frozenset({"plain.healthz", "plain.readyz", "static"})
# Not rate limited: job status polls (cheap, and a page polls while a job runs) and the
# job dashboard (behind its own password, and it polls every few seconds).
UNLIMITED_ENDPOINTS = frozenset({"jobs_api.job_status"})
UNLIMITED_BLUEPRINTS = frozenset({"rq_dashboard"})
BATCH_ENDPOINT = "api.batch"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the allowlist or the rate limiter turned away, and how to tell the client."""

    error: ApiError
    who: str = ""  # the refused address, when the allowlist refused (its page names it)

    def wants_page(self, exchange: Exchange) -> bool:
        """Whether the answer is an HTML page (rendered by Flask) rather than JSON."""
        if self.who:
            return not exchange.path.startswith("/api/") and prefers_html(exchange.accept)
        return error_page_wanted(
            exchange.blueprint, exchange.path, exchange.user_agent, exchange.accept
        )


def init_redis(app: Flask, settings: Settings) -> RedisGuard | None:
    """Connect the visit counter and the readiness check to ``IPGEO_REDIS_URL``, if set."""
    if not settings.redis_url:
        return None
    client = redis.Redis(connection_pool=connection_pool(settings.redis_url))
    guard = RedisGuard(client)
    app.extensions["ipgeo.redis"] = guard
    app.extensions["ipgeo.visits"] = VisitCounter(
        client, guard, settings.visit_ttl, settings.client_ipv6_prefix
    )
    app.extensions["ipgeo.readiness"]["redis"] = guard.check
    return guard


@dataclass(frozen=True, slots=True)
class Client:
    """What the settings say of one client address."""

    allowed: bool  # by ``IPGEO_ALLOWED``
    exempt: bool  # from rate limits (``IPGEO_RATE_LIMIT_EXEMPT``)
    key: str  # what its rate limits are counted under (``client_key``)


class Protection:
    """Who may ask (``IPGEO_ALLOWED``) and how often (``IPGEO_RATE_LIMIT``)."""

    def __init__(self, settings: Settings, guard: RedisGuard | None) -> None:
        self.allowed = settings.allowed
        self.exempt = settings.rate_limit_exempt
        self.batch_limit = settings.batch_limit
        self.ipv6_prefix = settings.client_ipv6_prefix
        # Clients come back: what the settings say of one is worked out once.
        self.clients: BoundedTable[IPAddress | None, Client] = BoundedTable(self._client)
        self.batch_body_limit = settings.batch_body_limit
        self.guard = guard
        self.limiter: RateLimiter | None = None
        if settings.rate_limit:
            if guard is None:
                log.warning(
                    "IPGEO_REDIS_URL is unset: rate limits are counted per process, in memory "
                    "(several workers multiply them)"
                )
            self.limiter = RateLimiter(
                settings.rate_limit, guard.client.connection_pool if guard else None
            )

    def _client(self, ip: IPAddress | None) -> Client:
        return Client(
            is_allowed(ip, self.allowed),
            in_networks(ip, self.exempt),
            client_key(ip, self.ipv6_prefix) if ip is not None else "unknown",
        )

    def forbidden(self, exchange: Exchange) -> Refusal | None:
        """The allowlist's refusal of ``exchange``, if any (probes and static files pass)."""
        if not self.allowed or exchange.endpoint in OPEN_ENDPOINTS:
            return None
        ip = exchange.client_ip
        if self.clients[ip].allowed:
            return None
        who = str(ip) if ip is not None else "your address"
        return Refusal(ApiError(403, "forbidden", f"{who} is not allowed to use this service"), who)

    def rate_limit(self, exchange: Exchange) -> RateLimitOutcome | None:
        """Count ``exchange`` against its client's limits; ``None`` when it is not limited.

        A client is its IPv4 address or its IPv6 network (``IPGEO_CLIENT_IPV6_PREFIX``).

        Fails open: while Redis is unreachable nothing is counted (the guard warns).
        """
        limiter = self.limiter
        if limiter is None:
            return None
        client = self.clients[exchange.client_ip]
        if client.exempt or self._unlimited(exchange):
            return None
        try:
            outcome = limiter.charge(client.key, self._cost(exchange))
        except redis.RedisError as exc:
            if self.guard is not None:
                self.guard.failed("rate limiting", exc)
            return None
        if self.guard is not None:
            self.guard.succeeded()
        return outcome

    def _unlimited(self, exchange: Exchange) -> bool:
        endpoint = exchange.endpoint
        # Unknown URLs (404, 405) and static files of any blueprint, as Flask-Limiter had it.
        if endpoint is None or endpoint.rpartition(".")[2] == "static":
            return True
        if exchange.method == "OPTIONS" or endpoint in OPEN_ENDPOINTS:
            return True
        if endpoint in UNLIMITED_ENDPOINTS or exchange.blueprint in UNLIMITED_BLUEPRINTS:
            return True
        return self.guard is not None and not self.guard.available()

    def _cost(self, exchange: Exchange) -> int:
        """What a request costs: one, or one per query for the batch endpoint."""
        if exchange.endpoint != BATCH_ENDPOINT:
            return 1
        limit, body_limit = self.batch_limit, self.batch_body_limit
        length = exchange.content_length
        if length is not None and length > body_limit:
            return 1  # answered 413 without reading the body
        body = exchange.body(body_limit)  # the handler reads the same bytes
        if len(body) > body_limit:
            return 1  # answered 413
        try:
            queries = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 1
        return min(max(len(queries), 1), limit) if isinstance(queries, list) else 1
