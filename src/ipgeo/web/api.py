"""JSON API: ``/api/v1/lookup``, ``/api/v1/batch``, ``/api/v1/meta`` and the OpenAPI document."""

from __future__ import annotations

import threading
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from ipgeo import __version__
from ipgeo.bulk import CachedLookup
from ipgeo.bulk.json_batch import JsonBatch
from ipgeo.formats import render, to_json
from ipgeo.geo import ATTRIBUTION, FIELDS, GeoError, GeoService, LookupResult
from ipgeo.geo.timezones import zone_details
from ipgeo.web.answers import cached_lookup
from ipgeo.web.errors import ApiError
from ipgeo.web.openapi import openapi_document
from ipgeo.web.params import language, output_format, selected_fields

api = Blueprint("api", __name__)
_LOOKUPS_LOCK = threading.Lock()


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
    answer, body, content_type = cached_lookup(
        ("lookup", query, fields, fmt, lang), fields, fmt, lambda: service.lookup(query, lang)
    )
    if body is None:
        body, content_type = answer.rendered()
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


def _json_batch() -> JsonBatch | None:
    """The app's fast batch path (``None`` when answers depend on reverse DNS)."""
    service = geo_service()
    if service.reverse_dns:
        return None
    fast: JsonBatch | None = current_app.extensions.get("ipgeo.json_batch")
    if fast is None:
        with _LOOKUPS_LOCK:
            fast = current_app.extensions.setdefault("ipgeo.json_batch", JsonBatch(service))
    return fast


def batch_body(queries: list[str], fields: tuple[str, ...] | None, lang: str | None) -> bytes:
    """The batch answer as JSON: plain IPv4 addresses via ``JsonBatch``, the rest as before.

    Byte for byte ``to_json(batch_answers(queries, fields, lang))`` (tests compare them).
    """
    fast = _json_batch()
    texts: list[bytes | None] = (
        fast.answer(queries, fields, lang) if fast is not None else [None] * len(queries)
    )
    missing = [position for position, text in enumerate(texts) if text is None]
    if missing:
        answers = batch_answers([queries[position] for position in missing], fields, lang)
        for position, answer in zip(missing, answers, strict=True):
            texts[position] = to_json(answer)
    return b"[" + b",".join(texts) + b"]"  # type: ignore[arg-type]


def _bulk_lookup(lang: str | None) -> CachedLookup | None:
    """The app's shared cached lookup path for ``lang`` (``None`` when not cached)."""
    service = geo_service()
    if service.reverse_dns or (lang is not None and lang not in service.languages):
        return None
    lookups: dict[str | None, CachedLookup] = current_app.extensions.setdefault(
        "ipgeo.bulk_lookups", {}
    )
    with _LOOKUPS_LOCK:
        lookup = lookups.get(lang)
        if lookup is None:
            lookup = lookups[lang] = CachedLookup(service, lang)
    return lookup


def batch_answers(
    queries: list[str], fields: tuple[str, ...] | None, lang: str | None
) -> list[dict[str, Any]]:
    """Answers in query order: IPs through the bulk engine's cached path, names via DNS."""
    service = geo_service()
    cached = _bulk_lookup(lang)
    # IPs go through the bulk engine in one call (parsed without ``ipaddress`` objects).
    entries = cached.get_texts(queries) if cached is not None else [None] * len(queries)
    answers: list[dict[str, Any]] = []
    append = answers.append
    for query, entry in zip(queries, entries, strict=True):
        if entry is not None:
            if entry.error is not None:
                append({"query": query, "error": {"code": entry.error, "message": entry.message}})
                continue
            row = dict(zip(FIELDS, entry.row, strict=True))
            row["query"] = query.strip()
            if row["time_zone"]:  # the engine's LRU keeps entries longer than their clock
                zone = zone_details(row["time_zone"], row["time_zone_source"])
                if zone is not None:
                    row["utc_offset"], row["local_time"] = zone.utc_offset, zone.local_time
            append(row if fields is None else {name: row.get(name) for name in fields})
            continue
        try:
            append(service.lookup(query, lang=lang).as_dict(fields))
        except GeoError as exc:
            error = ApiError.from_geo(exc)
            append({"query": query, "error": {"code": error.code, "message": error.message}})
    return answers


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
