"""Prometheus metrics of the service, jobs and databases (multi-process aware; no Flask).

Metrics are created on first use, so a server can switch the process to multi-process mode
(``PROMETHEUS_MULTIPROC_DIR``) before any value exists. Jobs and web code both record here.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# prometheus_client (~40 ms with the http.server and ssl it imports) is imported on first use:
# commands such as ``ipgeo bulk`` import this module through ``GeoService`` but may record
# nothing at all.
if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric

    from ipgeo.geo.models import DatabaseInfo

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every metric the service records."""

    requests: Counter
    request_duration: Histogram
    lookups: Counter
    rate_limited: Counter
    jobs: Counter
    job_duration: Histogram


_created: list[Metrics] = []
_create_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics (created once, on first call, whichever thread makes it)."""
    if _created:
        return _created[0]
    with _create_lock:
        if not _created:
            _created.append(_create_metrics())
    return _created[0]


# Labelled children by (metric field of ``Metrics``, label values): ``labels()`` costs more
# than the increment itself, and the children live as long as their metric.
_children: dict[tuple[str, tuple[str, ...]], Any] = {}
_CHILDREN_LIMIT = 4096  # label values come from requests (methods): never grow without bound


def labelled(metric: str, *labels: str) -> Any:
    """``metrics().<metric>.labels(*labels)``, looked up once per label values."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        if len(_children) >= _CHILDREN_LIMIT:
            _children.clear()
        child = _children[key] = getattr(metrics(), metric).labels(*labels)
    return child


def _create_metrics() -> Metrics:
    from prometheus_client import Counter, Histogram

    return Metrics(
        requests=Counter(
            "ipgeo_http_requests",
            "HTTP requests by endpoint (URL rule), method and status.",
            ["endpoint", "method", "status"],
        ),
        request_duration=Histogram(
            "ipgeo_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint (URL rule).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
        ),
        lookups=Counter(
            "ipgeo_lookups",
            "Lookups by result: found, or the error code (not_found, reserved_address, ...).",
            ["result"],
        ),
        rate_limited=Counter(
            "ipgeo_rate_limited",
            "Requests rejected with 429 Too Many Requests, by endpoint.",
            ["endpoint"],
        ),
        jobs=Counter(
            "ipgeo_jobs",
            "Background jobs finished, by kind and status (finished, failed, ...).",
            ["kind", "status"],
        ),
        job_duration=Histogram(
            "ipgeo_job_duration_seconds",
            "Run time of background jobs, by kind.",
            ["kind"],
            buckets=JOB_BUCKETS,
        ),
    )


def multiprocess_dir() -> Path | None:
    """The multi-process metrics directory of this process, if any."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def enable_multiprocess(directory: Path | None = None, clean: bool = True) -> Path:
    """Switch this process (and its future children) to multi-process metrics in ``directory``.

    Without a directory a new private one is made. Must run before the first metric is used.
    """
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="ipgeo-metrics-"))
    else:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if clean:
            for stale in directory.glob("*.db"):
                stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def mark_process_dead(pid: int) -> None:
    """Tell multi-process metrics a worker is gone (its live gauges are dropped)."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class DatabaseSource(Protocol):
    """What the database collector reads: ``GeoService`` fits."""

    @property
    def databases(self) -> list[DatabaseInfo]: ...

    @property
    def generation(self) -> int: ...


class DatabaseCollector:
    """Database build time, age in days and reload generation, read at scrape time."""

    def __init__(self, source: DatabaseSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges."""
        from prometheus_client.metrics_core import GaugeMetricFamily

        infos = self.source.databases
        labels = ["role", "database_type"]
        build = GaugeMetricFamily(
            "ipgeo_database_build_timestamp_seconds",
            "Build time of each database in service (Unix time).",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "ipgeo_database_age_days", "Age of each database in service, in days.", labels=labels
        )
        now = time.time()
        for role, info in zip(("city", "asn"), infos, strict=False):
            build.add_metric([role, info.database_type], info.build_epoch)
            age.add_metric([role, info.database_type], round((now - info.build_epoch) / 86400, 3))
        generation = GaugeMetricFamily(
            "ipgeo_database_generation",
            "Database reloads in the process that answered this scrape (1 = as started).",
            value=self.source.generation,
        )
        yield from (build, age, generation)


class _DefaultRegistry:
    def collect(self) -> Iterator[Metric]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def exposition(source: DatabaseSource) -> bytes:
    """The Prometheus text exposition of all processes' metrics plus the database gauges."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    metrics()  # every family is listed, even before its first sample
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultRegistry())
    registry.register(DatabaseCollector(source))
    return generate_latest(registry)
