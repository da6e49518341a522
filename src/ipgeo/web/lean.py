"""A lean WSGI path for the plainest lookups: ``GET /api/v1/lookup/<ip>``, JSON, no options.

Flask's request context, URL matching and hooks cost more CPU than a cached lookup. This
dispatcher sits in front of the Flask app and answers only requests whose Flask answer it
can give byte for byte: a GET of one IP address, no query string, JSON accepted, on an app
without an allowlist, rate limits or per-origin CORS (it is not installed otherwise).
Everything else, and any request it is unsure about, goes to Flask unchanged. It records
the same metrics, writes the same access-log line and sends the same headers as the route
with its hooks; the API tests run against both paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from ipgeo.answers import AnswerCache, cached_lookup
from ipgeo.clientip import client_ip
from ipgeo.formats import to_json
from ipgeo.geo import GeoError, GeoService
from ipgeo.geo.queries import IPAddress, parse_ip
from ipgeo.logs import request_id_var
from ipgeo.settings import Settings
from ipgeo.web.errors import ApiError
from ipgeo.web.observability import (
    AccessRecord,
    access_log,
    database_build,
    log_access,
    record_request,
    request_id_from,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

LOOKUP_PREFIX = "/api/v1/lookup/"
LOOKUP_RULE = "/api/v1/lookup/<path:query>"  # the metrics' endpoint label, as Flask names it
# Accept headers for which the Flask route answers JSON (see ``params.output_format``).
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})


def lean_path_applies(settings: Settings) -> bool:
    """Whether the lean path can answer exactly as Flask would with these settings."""
    return (
        settings.lean_path
        and not settings.allowed
        and not settings.rate_limit
        and not settings.reverse_dns
        and settings.cors_origins in ((), ("*",))
    )


class LeanLookups:
    """WSGI middleware answering plain IP lookups itself and passing the rest to Flask."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApplication) -> None:
        settings: Settings = app.extensions["ipgeo.settings"]
        self.flask_wsgi = flask_wsgi
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.cache: AnswerCache | None = app.extensions.get("ipgeo.answers")
        self.trusted = settings.trusted_proxies
        self.cors = settings.cors_origins == ("*",)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if (
            not path.startswith(LOOKUP_PREFIX)
            or environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("HTTP_ACCEPT", "") not in _JSON_ACCEPTS
        ):
            return self.flask_wsgi(environ, start_response)
        query = path[len(LOOKUP_PREFIX) :]
        ip = parse_ip(query) if query.isascii() else None
        if ip is None:  # names (DNS), bad input: Flask
            return self.flask_wsgi(environ, start_response)
        return self._lookup(environ, start_response, path, query, ip)

    def _lookup(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        query: str,
        ip: IPAddress,
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        token = request_id_var.set(rid)
        try:
            status = 200
            try:
                answer, body, content_type = cached_lookup(
                    self.cache,
                    ("lookup", query, None, "json", None),  # the Flask route's key
                    None,
                    "json",
                    # what ``service.lookup(query)`` does for an IP (reverse DNS is off here)
                    lambda: self.service.lookup_ip(ip, query=query.strip()),
                )
                if body is None:
                    body, content_type = answer.rendered()
            except GeoError as exc:
                error = ApiError.from_geo(exc)
                status, body, content_type = (
                    error.status,
                    to_json(error.as_dict()),
                    "application/json",
                )
            headers = [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("X-Request-ID", rid),
                ("X-Database-Build", database_build(self.service)),
            ]
            if self.cors:
                headers.append(("Access-Control-Allow-Origin", "*"))
            start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
            duration = time.perf_counter() - started
            record_request(LOOKUP_RULE, "GET", status, duration)
            if access_log.isEnabledFor(logging.INFO):
                self._log(environ, path, status, duration, rid)
            return [body]
        finally:
            request_id_var.reset(token)

    def _log(
        self, environ: dict[str, Any], path: str, status: int, duration: float, rid: str
    ) -> None:
        client = client_ip(
            environ.get("REMOTE_ADDR") or "",
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("HTTP_X_REAL_IP"),
            self.trusted,
        )
        log_access(
            AccessRecord(
                method="GET",
                full_path=path,
                path=path,
                query="",
                status=status,
                duration=duration,
                client=str(client) if client is not None else "-",
                request_id=rid,
                user_agent=environ.get("HTTP_USER_AGENT", ""),
                endpoint=LOOKUP_RULE,
            )
        )


def install_lean_path(app: Flask) -> bool:
    """Put the lean path in front of ``app`` when its settings allow; True when installed."""
    if not lean_path_applies(app.extensions["ipgeo.settings"]):
        return False
    app.wsgi_app = LeanLookups(app, app.wsgi_app)  # type: ignore[method-assign]
    return True
