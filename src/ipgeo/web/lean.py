"""A lean WSGI path for the plainest requests: ``GET /api/v1/lookup/<ip>``, ``/json``, ``/ip``.

Flask's request context, URL matching and hooks cost more CPU than a lookup. This dispatcher
sits in front of the Flask app and answers only requests whose Flask answer it can give byte
for byte: a GET without query string, JSON accepted (``/ip`` answers text whatever is
accepted), on an app without an allowlist, rate limits or per-origin CORS (it is not installed
otherwise). Everything else, and any request it is unsure about (bad input, errors other than
a lookup's own), goes to Flask unchanged. It records the same metrics, writes the same
access-log line and sends the same headers as the routes with their hooks; the API tests run
against both paths.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from ipgeo.answers import AnswerCache, cached_lookup
from ipgeo.clientip import client_ip
from ipgeo.formats import render, to_json
from ipgeo.geo import GeoError, GeoService, LookupResult
from ipgeo.geo.queries import IPAddress, parse_ip
from ipgeo.logs import request_id_var
from ipgeo.settings import Settings
from ipgeo.visits import VisitCounter
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
# Accept headers for which the Flask routes answer JSON (see ``params.output_format``).
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
_STATUS_LINES = {code: f"{code} {text.upper()}" for code, text in HTTP_STATUS_CODES.items()}
_CLIENTS_LIMIT = 4096

# What a handler gives back: status, body, content type.
Answer = tuple[int, bytes, str]


def lean_path_applies(settings: Settings) -> bool:
    """Whether the lean path can answer exactly as Flask would with these settings."""
    return (
        settings.lean_path
        and not settings.allowed
        and not settings.rate_limit
        and not settings.reverse_dns
        and settings.cors_origins in ((), ("*",))
    )


def _is_ipv4_text(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError, TypeError):
        return False
    return True


class LeanLookups:
    """WSGI middleware answering plain lookups itself and passing the rest to Flask."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApplication) -> None:
        settings: Settings = app.extensions["ipgeo.settings"]
        self.flask_wsgi = flask_wsgi
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.cache: AnswerCache | None = app.extensions.get("ipgeo.answers")
        self.visits: VisitCounter | None = app.extensions.get("ipgeo.visits")
        self.trusted = settings.trusted_proxies
        self.cors = settings.cors_origins == ("*",)
        self.access_log = settings.access_log
        # (peer, X-Forwarded-For, X-Real-IP) -> client address: a few clients send most requests
        self._clients: dict[tuple[str, str | None, str | None], IPAddress | None] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return self.flask_wsgi(environ, start_response)
        json_accepted = environ.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS
        if path.startswith(LOOKUP_PREFIX) and json_accepted:
            query = path[len(LOOKUP_PREFIX) :]
            if _is_ipv4_text(query):
                return self._serve(environ, start_response, path, LOOKUP_RULE, self._lookup, query)
            ip = parse_ip(query) if query.isascii() else None
            if ip is None:  # names (DNS), bad input: Flask
                return self.flask_wsgi(environ, start_response)
            return self._serve(environ, start_response, path, LOOKUP_RULE, self._lookup, query)
        if path == "/json" and json_accepted:
            client = self._client(environ)
            if client is not None:
                return self._serve(environ, start_response, path, path, self._own_json, client)
        elif path == "/ip":
            client = self._client(environ)
            if client is not None:
                return self._serve(environ, start_response, path, path, _own_ip, client)
        return self.flask_wsgi(environ, start_response)

    def _client(self, environ: WSGIEnvironment) -> IPAddress | None:
        """The client address as ``request_client_ip`` finds it (``None``: Flask answers)."""
        key = (
            environ.get("REMOTE_ADDR") or "",
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("HTTP_X_REAL_IP"),
        )
        try:
            return self._clients[key]
        except KeyError:
            pass
        found = client_ip(*key, self.trusted)
        if len(self._clients) >= _CLIENTS_LIMIT:
            self._clients.clear()
        self._clients[key] = found
        return found

    def _serve(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        endpoint: str,
        handler: Callable[[Any], Answer],
        argument: Any,
    ) -> Iterable[bytes]:
        """Answer with ``handler(argument)`` plus what the Flask hooks add to every request."""
        started = time.perf_counter()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        token = request_id_var.set(rid)
        try:
            status, body, content_type = handler(argument)
            headers = [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("X-Request-ID", rid),
                ("X-Database-Build", database_build(self.service)),
            ]
            if self.cors:
                headers.append(("Access-Control-Allow-Origin", "*"))
            start_response(_STATUS_LINES[status], headers)
            duration = time.perf_counter() - started
            record_request(endpoint, "GET", status, duration)
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                self._log(environ, path, endpoint, status, duration, rid)
            return [body]
        finally:
            request_id_var.reset(token)

    def _lookup(self, query: str) -> Answer:
        """What ``api.lookup`` answers for an IP address (reverse DNS is off here)."""
        try:
            answer, body, content_type = cached_lookup(
                self.cache,
                ("lookup", query, None, "json", None),  # the Flask route's key
                None,
                "json",
                lambda: self.service.lookup_ip(_parsed(query), query=query.strip()),
                quick=lambda: self.service.quick_ipv4(query),
            )
            if body is None:
                body, content_type = answer.rendered()
        except GeoError as exc:
            error = ApiError.from_geo(exc)
            return error.status, to_json(error.as_dict()), "application/json"
        return 200, body, content_type

    def _own_json(self, ip: IPAddress) -> Answer:
        """What ``plain.own_json`` answers without options: the lookup plus ``visits``."""
        try:
            answer, _, _ = cached_lookup(
                self.cache,
                ("own", ip, None, "json", None),  # the Flask route's key
                None,
                "json",
                lambda: self.service.lookup_ip(ip),
                keep_row=True,
                quick=(lambda: self.service.quick_ipv4(str(ip))) if ip.version == 4 else None,
            )
            row = answer.fresh_row()
        except GeoError:  # reserved or unknown: only the IP
            row = LookupResult(ip=str(ip), query=str(ip), version=ip.version).as_dict()
        visits = self.visits.hit(ip) if self.visits is not None else None
        if visits is not None:
            row["visits"] = visits
        body, content_type = render(row, "json")
        return 200, body, content_type

    def _log(
        self,
        environ: dict[str, Any],
        path: str,
        endpoint: str,
        status: int,
        duration: float,
        rid: str,
    ) -> None:
        client = self._client(environ)
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
                endpoint=endpoint,
            )
        )


def _own_ip(ip: IPAddress) -> Answer:
    """What ``plain.ip_text`` answers."""
    return 200, f"{ip}\n".encode(), "text/plain; charset=utf-8"


def _parsed(query: str) -> IPAddress:
    ip = parse_ip(query)
    if ip is None:  # only called for queries that parsed before
        raise ValueError(f"{query!r} is not an IP address")
    return ip


def install_lean_path(app: Flask) -> bool:
    """Put the lean path in front of ``app`` when its settings allow; True when installed."""
    if not lean_path_applies(app.extensions["ipgeo.settings"]):
        return False
    app.wsgi_app = LeanLookups(app, app.wsgi_app)  # type: ignore[method-assign]
    return True
