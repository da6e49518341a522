"""Request ids, one access-log line per request, request metrics and ``/metrics``."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from ipgeo.geo import GeoService
from ipgeo.logs import request_id_var
from ipgeo.metrics import exposition, labelled
from ipgeo.web.api import geo_service
from ipgeo.web.errors import ApiError
from ipgeo.web.params import request_client_ip

access_log = logging.getLogger("ipgeo.access")
observability = Blueprint("observability", __name__)

# nginx's $request_id is 32 hex digits; accept ids of that kind, never arbitrary text.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def request_id() -> str:
    """The id of the current request (from ``X-Request-ID`` when sane, else generated)."""
    rid: str = g.request_id
    return rid


@lru_cache(maxsize=16)
def _iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def request_id_from(incoming: str) -> str:
    """The id for a request: ``incoming`` (an ``X-Request-ID``) when sane, else a new one."""
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def database_build(service: GeoService) -> str:
    """The ``X-Database-Build`` header: the build time of the City database in service."""
    return _iso_time(service.city.info.build_epoch)


def record_request(endpoint: str, method: str, status: int, duration: float) -> None:
    """Count one answered request and its latency."""
    labelled("requests", endpoint, method, str(status)).inc()
    labelled("request_duration", endpoint).observe(duration)
    if status == 429:
        labelled("rate_limited", endpoint).inc()


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """What the access log says about one request."""

    method: str
    full_path: str  # path and query string
    path: str
    query: str
    status: int
    duration: float
    client: str
    request_id: str
    user_agent: str
    endpoint: str


def log_access(record: AccessRecord) -> None:
    """Write the one access-log line of a request."""
    access_log.info(
        '%s "%s %s" %d %.1f ms id=%s "%s"',
        record.client,
        record.method,
        record.full_path,
        record.status,
        record.duration * 1000,
        record.request_id,
        record.user_agent,
        extra={
            "method": record.method,
            "path": record.path,
            "query": record.query,
            "status": record.status,
            "duration_ms": round(record.duration * 1000, 3),
            "client_ip": record.client,
            "request_id": record.request_id,
            "user_agent": record.user_agent,
            "endpoint": record.endpoint,
        },
    )


def _before() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id_from(request.headers.get("X-Request-ID", ""))
    g.request_id_token = request_id_var.set(g.request_id)


def _after(response: Response) -> Response:
    if "request_started" not in g:  # another before-request hook answered first
        _before()
    duration = time.perf_counter() - g.request_started
    response.headers["X-Request-ID"] = g.request_id
    response.headers["X-Database-Build"] = database_build(geo_service())
    endpoint = _endpoint()
    record_request(endpoint, request.method, response.status_code, duration)
    if current_app.extensions["ipgeo.settings"].access_log and access_log.isEnabledFor(
        logging.INFO
    ):
        client = request_client_ip()
        log_access(
            AccessRecord(
                method=request.method,
                full_path=request.full_path.rstrip("?"),
                path=request.path,
                query=request.query_string.decode("latin-1"),
                status=response.status_code,
                duration=duration,
                client=str(client) if client is not None else "-",
                request_id=g.request_id,
                user_agent=request.headers.get("User-Agent", ""),
                endpoint=endpoint,
            )
        )
    return response


def _teardown(exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


@observability.get("/metrics")
def metrics_view() -> Response:
    """Prometheus metrics of every worker process; only for ``IPGEO_METRICS_ALLOWED``."""
    allowed = current_app.extensions["ipgeo.settings"].metrics_allowed
    client = request_client_ip()
    if client is None or not any(client in network for network in allowed):
        raise ApiError(403, "forbidden", "metrics are only served to the metrics network")
    return Response(exposition(geo_service()), content_type=CONTENT_TYPE_LATEST)


def init_observability(app: Flask) -> None:
    """Register the request hooks and the ``/metrics`` endpoint."""
    # First of all before-request hooks, so that requests an allowlist or a rate limiter
    # answers early still get an id, a log line and their place in the metrics.
    app.before_request_funcs.setdefault(None, []).insert(0, _before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    app.register_blueprint(observability)
