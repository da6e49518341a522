"""``/ip`` and ``/json`` for the caller, plain-text single fields for scripts, health checks."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request

from ipgeo.formats import render
from ipgeo.geo import GeoError, LookupResult
from ipgeo.geo.queries import parse_ip
from ipgeo.web.api import geo_service, json_response
from ipgeo.web.errors import ApiError
from ipgeo.web.params import (
    language,
    output_format,
    request_client_ip,
    selected_fields,
)
from ipgeo.web.protection import count_visit

plain = Blueprint("plain", __name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _text(body: str, status: int = 200) -> Response:
    return Response(body + "\n", status=status, mimetype="text/plain")


def caller_ip() -> IPAddress:
    """The caller's address; a 400 when unknown (e.g. a unix socket peer)."""
    ip = request_client_ip()
    if ip is None:
        raise ApiError(400, "no_client_ip", "the client address is unknown")
    return ip


def own_result() -> LookupResult:
    """The caller's own lookup; reserved or unknown addresses give a result with only the IP."""
    ip = caller_ip()
    try:
        return geo_service().lookup_ip(ip, lang=language())
    except GeoError:
        return LookupResult(ip=str(ip), query=str(ip), version=ip.version)


@plain.get("/ip")
def ip_text() -> Response:
    """The caller's IP address as plain text."""
    return _text(str(caller_ip()))


@plain.get("/json")
def own_json() -> Response:
    """The caller's own lookup, with ``visits``: how often this IP called (when Redis is on)."""
    fields = selected_fields(extra=("visits",))
    fmt = output_format()
    ip = caller_ip()
    lang = language()
    shown = tuple(name for name in fields if name != "visits") if fields else None
    try:
        row = geo_service().lookup_ip(ip, lang=lang).as_dict(shown)
    except GeoError:  # reserved or unknown: only the IP
        row = LookupResult(ip=str(ip), query=str(ip), version=ip.version).as_dict(shown)
    visits = count_visit()
    if visits is not None and (fields is None or "visits" in fields):
        row["visits"] = visits
    body, content_type = render(row, fmt)
    return Response(body, content_type=content_type)


def _target() -> LookupResult:
    raw = request.args.get("ip")
    if raw is None:
        return geo_service().lookup_ip(caller_ip(), lang=language())
    ip = parse_ip(raw)
    if ip is None:
        raise ApiError(400, "invalid_query", f"{raw[:80]!r} is not an IP address")
    return geo_service().lookup_ip(ip, lang=language())


def _field_endpoint(name: str, render: Callable[[LookupResult], str | None]) -> None:
    def view() -> Response:
        result = _target()
        value = render(result)
        if value is None:
            raise ApiError(
                404, "not_found", f"no {name.replace('-', ' ')} is known for {result.ip}"
            )
        return _text(value)

    view.__name__ = f"field_{name.replace('-', '_')}"
    view.__doc__ = f"The {name} of the caller (or of ``?ip=``) as plain text."
    plain.add_url_rule(f"/{name}", view_func=view, methods=["GET"])


def _coordinates(result: LookupResult) -> str | None:
    if result.latitude is None or result.longitude is None:
        return None
    return f"{result.latitude},{result.longitude}"


_field_endpoint("country", lambda r: r.country)
_field_endpoint("country-iso", lambda r: r.country_iso)
_field_endpoint("city", lambda r: r.city)
_field_endpoint("coordinates", _coordinates)
_field_endpoint("timezone", lambda r: r.time_zone)
_field_endpoint("asn", lambda r: f"AS{r.asn}" if r.asn is not None else None)


@plain.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@plain.get("/readyz")
def readyz() -> Response:
    """Readiness: every dependency as ok/degraded/down; 503 only when lookups cannot be served."""
    checks: dict[str, dict[str, object]] = {}
    for name, check in current_app.extensions["ipgeo.readiness"].items():
        try:
            checks[name] = check()
        except Exception as exc:  # a failing check reports, never crashes the probe
            checks[name] = {"status": "down", "error": str(exc)}
    down = checks.get("database", {}).get("status") == "down"
    degraded = any(check.get("status") != "ok" for check in checks.values())
    status = "down" if down else "degraded" if degraded else "ok"
    return json_response({"status": status, "checks": checks}, status=503 if down else 200)
