"""Request metrics, the access-log line, the build header and ``/metrics``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from prometheus_client import CONTENT_TYPE_LATEST

from ipgeo.geo import GeoService
from ipgeo.logs import escape_field
from ipgeo.metrics import exposition, labelled
from ipgeo.settings import IPNetwork
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import Answer, Exchange

access_log = logging.getLogger("ipgeo.access")


@lru_cache(maxsize=16)
def _iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def database_build(service: GeoService) -> str:
    """The ``X-Database-Build`` header: the build time of the City database in service."""
    return _iso_time(service.city.info.build_epoch)


# Methods counted under their own name; any other method is counted as ``other`` so that a
# client cannot add a series per request (``curl -X QWERTYUI``).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The metrics' label of an HTTP method: itself when standard, else ``other``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def record_request(endpoint: str, method: str, status: int, duration: float) -> None:
    """Count one answered request and its latency (``endpoint``: a URL rule or one bucket)."""
    labelled("requests", endpoint, method_label(method), str(status)).inc()
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


def access_record(exchange: Exchange, endpoint: str, status: int, duration: float) -> AccessRecord:
    """The access-log record of an answered request."""
    client = exchange.client_ip
    return AccessRecord(
        method=exchange.method,
        full_path=exchange.full_path,
        path=exchange.path,
        query=exchange.query_string,
        status=status,
        duration=duration,
        client=str(client) if client is not None else "-",
        request_id=exchange.request_id,
        user_agent=exchange.user_agent,
        endpoint=endpoint,
    )


def log_access(record: AccessRecord) -> None:
    """Write the one access-log line of a request.

    The line's fields come from the client, so its text is escaped the way nginx escapes its
    log (``\\xHH``): a path with a line break cannot write a line of its own. The JSON format
    keeps the raw values in its fields (the JSON encoder escapes them).
    """
    access_log.info(
        '%s "%s %s" %d %.1f ms id=%s "%s"',
        escape_field(record.client),
        escape_field(record.method),
        escape_field(record.full_path),
        record.status,
        record.duration * 1000,
        escape_field(record.request_id),
        escape_field(record.user_agent),
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


class MetricsEndpoint:
    """``/metrics``: Prometheus metrics of every worker process, for the metrics networks only."""

    def __init__(self, service: GeoService, allowed: tuple[IPNetwork, ...]) -> None:
        self.service = service
        self.allowed = allowed

    def __call__(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """The exposition, or a 403 outside ``IPGEO_METRICS_ALLOWED``."""
        client = exchange.client_ip
        if client is None or not any(client in network for network in self.allowed):
            raise ApiError(403, "forbidden", "metrics are only served to the metrics network")
        return Answer(200, exposition(self.service), CONTENT_TYPE_LATEST)
