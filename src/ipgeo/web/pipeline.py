"""ipgeo's WSGI application: one request pipeline that every request goes through.

Every request, whatever its route (the API, ``/json``, ``/ip``, the plain-text fields, pages,
docs, jobs, the dashboard, static files, unknown URLs) and with or without a query string,
runs the same stages, in this order:

1. **request id**: ``X-Request-ID`` when sane, else a new one; every log line of the request
   carries it.
2. **route**: the URL rule of the request, as Flask's URL map finds it. It names the
   endpoint (probes and static files are open and unlimited) and labels the metrics.
3. **client IP**: the peer, or behind ``IPGEO_TRUSTED_PROXIES`` the forwarded client;
   worked out when a stage first needs it, and remembered per (peer, forwarding headers).
4. **allowlist** (``IPGEO_ALLOWED``): others get 403. Before the rate limit, so a refused
   client costs no Redis call.
5. **rate limit** (``IPGEO_RATE_LIMIT``): one Redis call counts the request and reads the
   numbers for the headers; 429 when refused; fails open while Redis is down.
6. **answer**: the pipeline's own handler for the API, ``/json``, ``/ip``, the plain-text
   fields, health checks and ``/metrics``; the Flask app for everything else (pages, docs,
   jobs, the dashboard, static files, 404, 405, ``OPTIONS``), and for refusals shown as
   pages. The **visit counter** counts inside ``/json`` and the home page, once their
   parameters are valid (one Redis call).
7. **headers**: ``RateLimit-*``, ``X-Request-ID``, ``X-Database-Build`` and **CORS**.
8. **metrics**: requests and latency by rule, method and status.
9. **access log**: one line (``IPGEO_ACCESS_LOG``).

A stage that is off costs an attribute test. Flask runs none of these stages itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from ipgeo.geo import GeoError, GeoService
from ipgeo.logs import request_id_var
from ipgeo.web.cors import CorsPolicy
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import Answer, ClientAddresses, Exchange
from ipgeo.web.observability import (
    access_log,
    access_record,
    database_build,
    log_access,
    record_request,
)
from ipgeo.web.params import EXCHANGE_KEY
from ipgeo.web.protection import Protection, Refusal
from ipgeo.web.ratelimit import RateLimitOutcome
from ipgeo.web.routes import PipelineRoute, Router

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REFUSAL_KEY = "ipgeo.refusal"  # the environ key of a refusal Flask shows as a page
UNMATCHED = "<unmatched>"  # the metrics' endpoint label of requests without a rule
_STATUS_LINES = {code: f"{code} {text.upper()}" for code, text in HTTP_STATUS_CODES.items()}

Headers = list[tuple[str, str]]


class RequestPipeline:
    """The stages above around the pipeline's handlers and the Flask app."""

    def __init__(
        self,
        app: Flask,
        flask_wsgi: WSGIApplication,
        routes: list[PipelineRoute],
        protection: Protection,
    ) -> None:
        settings = app.extensions["ipgeo.settings"]
        self.flask_wsgi = flask_wsgi
        self.router = Router(app, routes)
        self.clients = ClientAddresses(settings.trusted_proxies)
        self.protection = protection
        self.cors = CorsPolicy(settings.cors_origins) if settings.cors_origins else None
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.access_log: bool = settings.access_log
        self.logger = app.logger

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        exchange = Exchange(environ, self.clients)
        environ[EXCHANGE_KEY] = exchange
        token = request_id_var.set(exchange.request_id)
        try:
            route = self.router.route(exchange)
            refusal = self.protection.forbidden(exchange)
            limits = None
            if refusal is None:
                limits = self.protection.rate_limit(exchange)
                if limits is not None and limits.breached:
                    refusal = Refusal(ApiError(429, "rate_limited", limits.message()))
            if refusal is not None and refusal.wants_page(exchange):
                environ[REFUSAL_KEY] = refusal
                status, body = self._flask(exchange, start_response, limits, refusal)
            elif refusal is not None:
                error = refusal.error
                answer = Answer(error.status, error.json(), "application/json")
                raised = not refusal.who  # the allowlist's refusal was never an exception
                status, body = self._respond(exchange, start_response, answer, raised, limits)
            elif route is not None:
                answer, raised = self._run(exchange, route)
                status, body = self._respond(exchange, start_response, answer, raised, limits)
            else:
                status, body = self._flask(exchange, start_response, limits, None)
            self._observe(exchange, status, time.perf_counter() - started)
            return body
        finally:
            request_id_var.reset(token)

    def _run(self, exchange: Exchange, route: PipelineRoute) -> tuple[Answer, bool]:
        """The handler's answer, or the answer of its error (then True)."""
        try:
            return route.handler(exchange, exchange.args), False
        except ApiError as exc:
            error = exc
        except GeoError as exc:
            error = ApiError.from_geo(exc)
        except HTTPException as exc:
            error = ApiError.from_http(exc)
        except Exception:
            self.logger.exception("unexpected error")
            error = ApiError(500, "internal_error", "an unexpected error occurred")
        return Answer(error.status, error.json(), "application/json"), True

    def _respond(
        self,
        exchange: Exchange,
        start_response: StartResponse,
        answer: Answer,
        raised: bool,
        limits: RateLimitOutcome | None,
    ) -> tuple[int, list[bytes]]:
        status, body, content_type = answer
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        headers += self._headers(exchange, raised, limits)
        start_response(_STATUS_LINES[status], headers)
        return status, [b"" if exchange.method == "HEAD" else body]

    def _flask(
        self,
        exchange: Exchange,
        start_response: StartResponse,
        limits: RateLimitOutcome | None,
        refusal: Refusal | None,
    ) -> tuple[int, Iterable[bytes]]:
        """Let the Flask app answer; the pipeline's headers follow Flask's own."""
        sent = [0]

        def start(status: str, headers: Headers, exc_info: object = None) -> object:
            code = sent[0] = int(status[:3])
            # Flask's error answers come from its error handlers (a forbidden page does not).
            ours = self._headers(exchange, code >= 400 and not (refusal and refusal.who), limits)
            if len(headers) > 2 and headers[-1][0] == "Content-Length":
                headers[-1:-1] = ours  # Werkzeug adds a missing length after every hook
            else:
                headers += ours
            return start_response(status, headers, exc_info)  # type: ignore[arg-type]

        body = self.flask_wsgi(exchange.environ, start)  # type: ignore[arg-type]
        return sent[0], body

    def _headers(
        self, exchange: Exchange, raised: bool, limits: RateLimitOutcome | None
    ) -> Headers:
        """The pipeline's headers of an answer (``raised``: an error's), after its own."""
        cors = self.cors.headers(exchange) if self.cors is not None else []
        # flask-cors gave error answers their headers before any other hook ran.
        headers = list(cors) if raised else []
        if limits is not None:
            headers += limits.headers(time.time())
        headers.append(("X-Request-ID", exchange.request_id))
        headers.append(("X-Database-Build", database_build(self.service)))
        if not raised:
            headers += cors
        return headers

    def _observe(self, exchange: Exchange, status: int, duration: float) -> None:
        endpoint = exchange.rule or UNMATCHED
        record_request(endpoint, exchange.method, status, duration)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            log_access(access_record(exchange, endpoint, status, duration))
