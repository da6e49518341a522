"""JSON API handlers: ``/api/v1/lookup``, ``/api/v1/batch``, ``/api/v1/meta``, the OpenAPI document.

They run inside the request pipeline (``ipgeo.web.pipeline``), not as Flask views.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, current_app

from ipgeo import __version__
from ipgeo.formats import render
from ipgeo.geo import GeoService, attribution_text
from ipgeo.geo.batch import batch_json
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import Answer, Exchange, json_answer
from ipgeo.web.openapi import openapi_document
from ipgeo.web.params import language, output_format, selected_fields


def geo_service() -> GeoService:
    """The application's lookup service (in Flask's app context)."""
    service: GeoService = current_app.extensions["ipgeo.geo"]
    return service


class LookupApi:
    """Handlers of the lookup API for the request pipeline."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.batch_limit: int = app.extensions["ipgeo.settings"].batch_limit
        self.batch_body_limit: int = app.extensions["ipgeo.settings"].batch_body_limit
        self.names_deadline: float = app.extensions["ipgeo.settings"].batch_names_deadline

    def lookup(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Look up one IP address or domain name."""
        query = args["query"]
        lang = language(exchange)
        try:
            fields, fmt = selected_fields(exchange), output_format(exchange)
        except ApiError:
            self.service.lookup(
                query, lang=lang
            )  # a bad query's error comes first, as it always did
            raise
        body, content_type = render(self.service.lookup(query, lang).as_dict(fields), fmt)
        return Answer(200, body, content_type)

    def batch(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Look up a JSON array of queries; answers keep the order, errors are per item."""
        limit, body_limit = self.batch_limit, self.batch_body_limit
        length = exchange.content_length
        body = b"" if length is not None and length > body_limit else exchange.body(body_limit)
        if (length is not None and length > body_limit) or len(body) > body_limit:
            raise ApiError(
                413,
                "too_large",
                f"the request body is larger than {body_limit:,} bytes, the most that "
                f"{limit} queries need (IPGEO_BATCH_LIMIT)",
            )
        try:
            queries = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(
                400, "invalid_json", "the body must be a JSON array of strings"
            ) from None
        if not isinstance(queries, list) or not all(isinstance(item, str) for item in queries):
            raise ApiError(400, "invalid_batch", "the body must be a JSON array of strings")
        if len(queries) > limit:
            raise ApiError(
                413,
                "too_many_queries",
                f"a batch holds at most {limit} queries, not {len(queries)}",
            )
        fields = selected_fields(exchange)
        lang = language(exchange)
        body = batch_json(self.service, queries, fields, lang, self.names_deadline)
        return Answer(200, body, "application/json")

    def meta(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Describe the service and its databases."""
        return json_answer(meta_document(self.service))

    def openapi(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """The OpenAPI 3 description of the API."""
        return json_answer(openapi_document(exchange.host_url.rstrip("/")))


def meta_document(service: GeoService) -> dict[str, Any]:
    """Service version, database metadata and the credits of the data in service."""
    service.refresh()  # describe the files in service now, not those of the last lookup
    databases = service.databases
    return {
        "service": "ipgeo",
        "version": __version__,
        "databases": [info.as_dict() for info in databases],
        "languages": list(service.languages),
        "timezone_locator": service.timezones.name,
        "attribution": attribution_text(databases),
    }
