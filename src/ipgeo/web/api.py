"""JSON API: ``/api/v1/lookup``, ``/api/v1/batch``, ``/api/v1/meta`` and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from ipgeo import __version__
from ipgeo.formats import render, to_json
from ipgeo.geo import ATTRIBUTION, GeoService, LookupResult
from ipgeo.geo.batch import batch_json
from ipgeo.web.errors import ApiError
from ipgeo.web.openapi import openapi_document
from ipgeo.web.params import language, output_format, selected_fields

api = Blueprint("api", __name__)


def geo_service() -> GeoService:
    """The application's lookup service."""
    service: GeoService = current_app.extensions["ipgeo.geo"]
    return service


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response serialized with orjson."""
    return Response(to_json(data), status=status, mimetype="application/json")


def result_response(result: LookupResult) -> Response:
    """Render a lookup result in the requested format with the selected fields."""
    fields = selected_fields()
    body, content_type = render(result.as_dict(fields), output_format())
    return Response(body, content_type=content_type)


@api.get("/api/v1/lookup/<path:query>")
def lookup(query: str) -> Response:
    """Look up one IP address or domain name."""
    service = geo_service()
    lang = language()
    try:
        fields, fmt = selected_fields(), output_format()
    except ApiError:
        service.lookup(query, lang=lang)  # a bad query's error comes first, as it always did
        raise
    body, content_type = render(service.lookup(query, lang).as_dict(fields), fmt)
    return Response(body, content_type=content_type)


@api.post("/api/v1/batch")
def batch() -> Response:
    """Look up a JSON array of queries; answers keep the order, errors are per item."""
    limit = current_app.extensions["ipgeo.settings"].batch_limit
    if request.content_length is not None and request.content_length > limit * 512 + 4096:
        raise ApiError(413, "too_large", f"the request body is too large for {limit} queries")
    try:
        queries = orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body must be a JSON array of strings") from None
    if not isinstance(queries, list) or not all(isinstance(item, str) for item in queries):
        raise ApiError(400, "invalid_batch", "the body must be a JSON array of strings")
    if len(queries) > limit:
        raise ApiError(
            413, "too_many_queries", f"a batch holds at most {limit} queries, not {len(queries)}"
        )
    fields = selected_fields()
    body = batch_body(queries, fields, language())
    return Response(body, status=200, mimetype="application/json")


def batch_body(queries: list[str], fields: tuple[str, ...] | None, lang: str | None) -> bytes:
    """The batch answer as JSON (the kernel's batch renderer)."""
    deadline = current_app.extensions["ipgeo.settings"].batch_names_deadline
    return batch_json(geo_service(), queries, fields, lang, deadline)


def meta_document() -> dict[str, Any]:
    """Service version, database metadata and the data licence attribution."""
    service = geo_service()
    return {
        "service": "ipgeo",
        "version": __version__,
        "databases": [info.as_dict() for info in service.databases],
        "languages": list(service.languages),
        "timezone_locator": service.timezones.name,
        "attribution": ATTRIBUTION,
    }


@api.get("/api/v1/meta")
def meta() -> Response:
    """Describe the service and its databases."""
    return json_response(meta_document())


@api.get("/api/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of the API."""
    return json_response(openapi_document(request.host_url.rstrip("/")))
