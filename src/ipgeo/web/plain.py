"""``/ip`` and ``/json`` for the caller, plain-text single fields for scripts, health checks.

They run inside the request pipeline (``ipgeo.web.pipeline``), not as Flask views.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from flask import Flask

from ipgeo.formats import render
from ipgeo.geo import GeoError, GeoService, LookupResult
from ipgeo.geo.queries import parse_ip
from ipgeo.visits import VisitCounter
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import Answer, Exchange, json_answer, text_answer
from ipgeo.web.params import language, output_format, selected_fields

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ReadinessCheck = Callable[[], dict[str, object]]


def caller_ip(exchange: Exchange) -> IPAddress:
    """The caller's address; a 400 when unknown (e.g. a unix socket peer)."""
    ip = exchange.client_ip
    if ip is None:
        raise ApiError(400, "no_client_ip", "the client address is unknown")
    return ip


def own_result(service: GeoService, exchange: Exchange) -> LookupResult:
    """The caller's own lookup; reserved or unknown addresses give a result with only the IP."""
    ip = caller_ip(exchange)
    try:
        return service.lookup_ip(ip, lang=language(exchange))
    except GeoError:
        return LookupResult(ip=str(ip), query=str(ip), version=ip.version)


def count_visit(visits: VisitCounter | None, exchange: Exchange) -> int | None:
    """Count a GET of the caller; the new total, or ``None`` without Redis."""
    ip = exchange.client_ip
    if visits is None or ip is None or exchange.method != "GET":
        return None
    return visits.hit(ip)


def _coordinates(result: LookupResult) -> str | None:
    if result.latitude is None or result.longitude is None:
        return None
    return f"{result.latitude},{result.longitude}"


# The plain-text endpoints: ``/<name>`` answers one value of the caller (or of ``?ip=``).
FIELD_ENDPOINTS: dict[str, Callable[[LookupResult], str | None]] = {
    "country": lambda r: r.country,
    "country-iso": lambda r: r.country_iso,
    "city": lambda r: r.city,
    "coordinates": _coordinates,
    "timezone": lambda r: r.time_zone,
    "asn": lambda r: f"AS{r.asn}" if r.asn is not None else None,
}


class CallerApi:
    """Handlers of the caller's own endpoints and the health checks for the request pipeline."""

    def __init__(self, app: Flask) -> None:
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.visits: VisitCounter | None = app.extensions.get("ipgeo.visits")
        self.readiness: dict[str, ReadinessCheck] = app.extensions["ipgeo.readiness"]
        self.details_allowed = app.extensions["ipgeo.settings"].metrics_allowed

    def ip_text(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """The caller's IP address as plain text."""
        return text_answer(str(caller_ip(exchange)))

    def own_json(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """The caller's own lookup, with ``visits``: how often this IP called (with Redis)."""
        fields = selected_fields(exchange, extra=("visits",))
        fmt = output_format(exchange)
        ip = caller_ip(exchange)
        lang = language(exchange)
        shown = tuple(name for name in fields if name != "visits") if fields else None
        try:
            row = self.service.lookup_ip(ip, lang=lang).as_dict(shown)
        except GeoError:  # reserved or unknown: only the IP
            row = LookupResult(ip=str(ip), query=str(ip), version=ip.version).as_dict(shown)
        visits = count_visit(self.visits, exchange)
        if visits is not None and (fields is None or "visits" in fields):
            row["visits"] = visits
        body, content_type = render(row, fmt)
        return Answer(200, body, content_type)

    def field(self, name: str) -> Callable[[Exchange, dict[str, str]], Answer]:
        """The handler of ``/<name>``: one value of the caller (or of ``?ip=``) as plain text."""
        value_of = FIELD_ENDPOINTS[name]

        def answer(exchange: Exchange, args: dict[str, str]) -> Answer:
            result = self._target(exchange)
            value = value_of(result)
            if value is None:
                raise ApiError(
                    404, "not_found", f"no {name.replace('-', ' ')} is known for {result.ip}"
                )
            return text_answer(value)

        return answer

    def _target(self, exchange: Exchange) -> LookupResult:
        raw = exchange.arg("ip")
        if raw is None:
            ip = caller_ip(exchange)
            return self.service.lookup_ip(ip, lang=language(exchange))
        parsed = parse_ip(raw)
        if parsed is None:
            raise ApiError(400, "invalid_query", f"{raw[:80]!r} is not an IP address")
        return self.service.lookup_ip(parsed, lang=language(exchange))

    def healthz(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Liveness: the process answers."""
        return json_answer({"status": "ok"})

    def readyz(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Readiness: each dependency ok/degraded/down; 503 only when lookups cannot be served.

        Only clients in ``IPGEO_METRICS_ALLOWED`` see the details (paths, errors, generation);
        every other client sees the status of each check.
        """
        checks: dict[str, dict[str, object]] = {}
        for name, check in self.readiness.items():
            try:
                checks[name] = check()
            except Exception as exc:  # a failing check reports, never crashes the probe
                checks[name] = {"status": "down", "error": str(exc)}
        down = checks.get("database", {}).get("status") == "down"
        degraded = any(check.get("status") != "ok" for check in checks.values())
        status = "down" if down else "degraded" if degraded else "ok"
        if not self._sees_details(exchange):
            checks = {name: {"status": check.get("status")} for name, check in checks.items()}
        return json_answer({"status": status, "checks": checks}, status=503 if down else 200)

    def _sees_details(self, exchange: Exchange) -> bool:
        client = exchange.client_ip
        return client is not None and any(client in network for network in self.details_allowed)
