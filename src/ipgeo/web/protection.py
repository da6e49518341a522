"""Flask hooks for the allowlist, per-IP rate limits and the visit counter."""

from __future__ import annotations

import logging
import math
import time

import orjson
import redis
from flask import Flask, Response, current_app, has_app_context, render_template, request
from flask_limiter import Limiter, RateLimitExceeded

from ipgeo.allowlist import in_networks, is_allowed
from ipgeo.redisstore import RedisGuard, connection_pool, limits_storage_uri
from ipgeo.settings import Settings
from ipgeo.visits import VisitCounter
from ipgeo.web.errors import ApiError
from ipgeo.web.params import request_client_ip

log = logging.getLogger("ipgeo.web")

# Probes and static files are never blocked or rate limited.
OPEN_ENDPOINTS = frozenset({"plain.healthz", "plain.readyz", "static"})
# Not rate limited: job status polls (cheap, and a page polls while a job runs) and the
# job dashboard (behind its own password, and it polls every few seconds).
UNLIMITED_ENDPOINTS = frozenset({"jobs_api.job_status"})
UNLIMITED_BLUEPRINTS = frozenset({"rq_dashboard"})


def wants_html_page() -> bool:
    """True for a browser asking for a page (not an API path, HTML preferred over JSON)."""
    if request.path.startswith("/api/"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def count_visit() -> int | None:
    """Count a GET of the current client; the new total, or ``None`` without Redis."""
    counter: VisitCounter | None = current_app.extensions.get("ipgeo.visits")
    ip = request_client_ip()
    if counter is None or ip is None or request.method != "GET":
        return None
    return counter.hit(ip)


def _forbidden() -> Response | None:
    settings: Settings = current_app.extensions["ipgeo.settings"]
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    ip = request_client_ip()
    if is_allowed(ip, settings.allowed):
        return None
    who = str(ip) if ip is not None else "your address"
    if wants_html_page():
        return Response(render_template("forbidden.html", ip=who), status=403)
    return ApiError(403, "forbidden", f"{who} is not allowed to use this service").response()


def _request_cost() -> int:
    """What a request costs: one, or one per query for the batch endpoint."""
    if request.endpoint != "api.batch":
        return 1
    limit: int = current_app.extensions["ipgeo.settings"].batch_limit
    if request.content_length is not None and request.content_length > limit * 512 + 4096:
        return 1  # answered 413 without reading the body
    try:
        queries = orjson.loads(request.get_data(cache=True))
    except orjson.JSONDecodeError:
        return 1
    return min(max(len(queries), 1), limit) if isinstance(queries, list) else 1


class _SwallowedErrors(logging.Filter):
    """Turn Flask-Limiter's per-request tracebacks into the guard's rate-limited warning."""

    def __init__(self, app: Flask, guard: RedisGuard) -> None:
        super().__init__()
        self.app = app
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        if not has_app_context() or current_app._get_current_object() is not self.app:  # type: ignore[attr-defined]
            return True  # another app's error: its own filter handles it
        if record.exc_info and "Swallowing error" in record.getMessage():
            error = record.exc_info[1] or RuntimeError(record.getMessage())
            self.guard.failed("rate limiting", error)
            return False
        return True


def _client_key() -> str:
    ip = request_client_ip()
    return ip.compressed if ip is not None else "unknown"


def _init_rate_limits(app: Flask, settings: Settings, guard: RedisGuard | None) -> None:
    if settings.redis_url and guard is not None:
        storage_uri = limits_storage_uri(settings.redis_url)
        options: dict[str, object] = {"connection_pool": guard.client.connection_pool}
    else:
        log.warning(
            "IPGEO_REDIS_URL is unset: rate limits are counted per process, in memory "
            "(several workers multiply them)"
        )
        storage_uri, options = "memory://", {}

    limiter = Limiter(
        _client_key,
        application_limits=[settings.rate_limit],
        application_limits_cost=_request_cost,
        storage_uri=storage_uri,
        storage_options=options,  # type: ignore[arg-type]
        strategy="sliding-window-counter",  # rejected requests cost nothing
        key_prefix="ipgeo",
        headers_enabled=False,  # written below, as the IETF RateLimit-* fields
        swallow_errors=True,  # fail open when Redis is down
    )

    @limiter.request_filter
    def _exempt() -> bool:
        if request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS:
            return True
        if request.endpoint in UNLIMITED_ENDPOINTS or request.blueprint in UNLIMITED_BLUEPRINTS:
            return True
        if in_networks(request_client_ip(), settings.rate_limit_exempt):
            return True
        return guard is not None and not guard.available()

    if guard is not None:
        logging.getLogger("flask-limiter").addFilter(_SwallowedErrors(app, guard))
    limiter.init_app(app)
    app.extensions["ipgeo.limiter"] = limiter

    @app.after_request
    def _rate_limit_headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        try:
            reset_in = max(0, math.ceil(current.reset_at - time.time()))
            remaining = max(0, current.remaining)
        except redis.RedisError as exc:
            if guard is not None:
                guard.failed("rate limiting", exc)
            return response
        response.headers["RateLimit-Limit"] = str(current.limit.amount)
        response.headers["RateLimit-Remaining"] = str(remaining)
        response.headers["RateLimit-Reset"] = str(reset_in)
        response.headers["RateLimit-Policy"] = ", ".join(
            f"{item.limit.amount};w={item.limit.get_expiry()}" for item in limiter.current_limits
        )
        if current.breached:
            response.headers["Retry-After"] = str(max(1, reset_in))
        return response

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        return ApiError(
            429,
            "rate_limited",
            f"too many requests from this address: the limit is {exc.limit.limit}; "
            "retry after the number of seconds in Retry-After",
        ).response()


def init_protection(app: Flask, settings: Settings) -> None:
    """Register the allowlist, rate limits, visit counter and Redis readiness check."""
    guard: RedisGuard | None = None
    if settings.redis_url:
        client = redis.Redis(connection_pool=connection_pool(settings.redis_url))
        guard = RedisGuard(client)
        app.extensions["ipgeo.redis"] = guard
        app.extensions["ipgeo.visits"] = VisitCounter(client, guard, settings.visit_ttl)
        app.extensions["ipgeo.readiness"]["redis"] = guard.check
    # The allowlist runs before the rate limiter, so refused clients cost no Redis call.
    # Settings are fixed for the app's life: without an allowlist the hook would only ever
    # return None, so it is not installed at all (one call less on every request).
    if settings.allowed:
        app.before_request(_forbidden)
    if settings.rate_limit:
        _init_rate_limits(app, settings, guard)
