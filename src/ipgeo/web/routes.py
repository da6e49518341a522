"""The routes the request pipeline answers itself, and finding the route of a request.

Every route lives in Flask's one URL map, so Flask still answers what these routes do not:
``OPTIONS``, other methods (405), redirects and unknown URLs, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from flask import Flask
from werkzeug.exceptions import HTTPException

from ipgeo.web.api import LookupApi
from ipgeo.web.exchange import Answer, Exchange
from ipgeo.web.observability import MetricsEndpoint
from ipgeo.web.plain import FIELD_ENDPOINTS, CallerApi
from ipgeo.web.webservice_api import WEBSERVICE_PREFIX, WebServiceApi
from ipgeo.webservice import KINDS

Handler = Callable[[Exchange, dict[str, str]], Answer]
LOOKUP_RULE = "/api/v1/lookup/<path:query>"
_LOOKUP_PREFIX = "/api/v1/lookup/"


@dataclass(frozen=True, slots=True)
class PipelineRoute:
    """A URL rule the pipeline answers with ``handler`` (not a Flask view)."""

    rule: str
    endpoint: str  # Flask's name for it: metrics, open and unlimited endpoints use it
    method: str  # GET (HEAD comes with it) or POST
    handler: Handler
    methods: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        served = {self.method, "HEAD"} if self.method == "GET" else {self.method}
        object.__setattr__(self, "methods", frozenset(served))


def pipeline_routes(app: Flask) -> list[PipelineRoute]:
    """The API routes, with their handlers bound to ``app``'s service and settings."""
    lookups = LookupApi(app)
    caller = CallerApi(app)
    metrics = MetricsEndpoint(
        app.extensions["ipgeo.geo"], app.extensions["ipgeo.settings"].metrics_allowed
    )
    return [
        PipelineRoute(LOOKUP_RULE, "api.lookup", "GET", lookups.lookup),
        PipelineRoute("/api/v1/batch", "api.batch", "POST", lookups.batch),
        PipelineRoute("/api/v1/meta", "api.meta", "GET", lookups.meta),
        PipelineRoute("/api/openapi.json", "api.openapi", "GET", lookups.openapi),
        PipelineRoute("/ip", "plain.ip_text", "GET", caller.ip_text),
        PipelineRoute("/json", "plain.own_json", "GET", caller.own_json),
        *(
            PipelineRoute(
                f"/{name}", f"plain.field_{name.replace('-', '_')}", "GET", caller.field(name)
            )
            for name in FIELD_ENDPOINTS
        ),
        PipelineRoute("/healthz", "plain.healthz", "GET", caller.healthz),
        PipelineRoute("/readyz", "plain.readyz", "GET", caller.readyz),
        PipelineRoute("/metrics", "observability.metrics_view", "GET", metrics),
        *(
            PipelineRoute(
                f"{WEBSERVICE_PREFIX}/{kind}/<address>",
                f"webservice.{kind}",
                "GET",
                WebServiceApi(app, kind),
            )
            for kind in KINDS
        ),
    ]


def _answered_by_the_pipeline(**args: str) -> NoReturn:
    raise RuntimeError("this route is answered by the request pipeline (ipgeo.web.pipeline)")


def register_routes(app: Flask, routes: list[PipelineRoute]) -> None:
    """Put the pipeline's routes in Flask's URL map (for 405s, ``OPTIONS`` and ``url_for``)."""
    for route in routes:
        app.add_url_rule(
            route.rule, route.endpoint, view_func=_answered_by_the_pipeline, methods=[route.method]
        )


class Router:
    """Finds the rule of a request as Flask's URL map would, the common routes without it."""

    def __init__(self, app: Flask, routes: list[PipelineRoute]) -> None:
        self.adapter = app.url_map.bind("localhost", subdomain="")
        self.by_endpoint = {route.endpoint: route for route in routes}
        self.fixed = {route.rule: route for route in routes if "<" not in route.rule}
        self.lookup = self.by_endpoint["api.lookup"]

    def route(self, exchange: Exchange) -> PipelineRoute | None:
        """Set ``exchange``'s rule, endpoint and arguments; the route answering it, if any.

        ``None`` leaves the request to Flask (with the rule set when one matched).
        """
        path, method = exchange.path, exchange.method
        if not exchange.path_info:  # Werkzeug redirects an empty path to "/"
            path = ""
        route = self.fixed.get(path)
        if route is not None and method in route.methods:
            exchange.rule, exchange.endpoint = route.rule, route.endpoint
            return route
        if route is None and path.startswith(_LOOKUP_PREFIX) and method in self.lookup.methods:
            query = path[len(_LOOKUP_PREFIX) :]
            # what the rule's ``path`` converter takes: no leading "/", no newline
            if query and query[0] != "/" and "\n" not in query:
                exchange.rule, exchange.endpoint = LOOKUP_RULE, self.lookup.endpoint
                exchange.args = {"query": query}
                return self.lookup
        try:
            rule, args = self.adapter.match(path, method, return_rule=True)
        except HTTPException:  # 404, 405 and redirects: Flask answers them
            return None
        exchange.rule, exchange.endpoint, exchange.args = rule.rule, rule.endpoint, dict(args)
        route = self.by_endpoint.get(rule.endpoint or "")
        return route if route is not None and method in route.methods else None
