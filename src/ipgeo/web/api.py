"""JSON API handlers: ``/api/v1/lookup``, ``/api/v1/batch``, ``/api/v1/meta``, the OpenAPI document.

They run inside the request pipeline (``ipgeo.web.pipeline``), not as Flask views.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from flask import Flask, current_app

from ipgeo import __version__
from ipgeo.bulk import CachedLookup
from ipgeo.bulk.json_batch import JsonBatch
from ipgeo.formats import render, to_json
from ipgeo.geo import ATTRIBUTION, FIELDS, GeoError, GeoService
from ipgeo.geo.timezones import zone_details
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import Answer, Exchange, json_answer
from ipgeo.web.openapi import openapi_document
from ipgeo.web.params import language, output_format, selected_fields

_LOOKUPS_LOCK = threading.Lock()


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
        limit = self.batch_limit
        length = exchange.content_length
        if length is not None and length > limit * 512 + 4096:
            raise ApiError(413, "too_large", f"the request body is too large for {limit} queries")
        try:
            queries = orjson.loads(exchange.body())
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
        with self.app.app_context():  # batch_body keeps its caches in the app's extensions
            body = batch_body(queries, fields, lang)
        return Answer(200, body, "application/json")

    def meta(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Describe the service and its databases."""
        return json_answer(meta_document(self.service))

    def openapi(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """The OpenAPI 3 description of the API."""
        return json_answer(openapi_document(exchange.host_url.rstrip("/")))


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


def meta_document(service: GeoService) -> dict[str, Any]:
    """Service version, database metadata and the data licence attribution."""
    return {
        "service": "ipgeo",
        "version": __version__,
        "databases": [info.as_dict() for info in service.databases],
        "languages": list(service.languages),
        "timezone_locator": service.timezones.name,
        "attribution": ATTRIBUTION,
    }
