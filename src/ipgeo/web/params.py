"""Reading request parameters: output format, fields, language, and who is asking."""

from __future__ import annotations

import re

from flask import request

from ipgeo.formats import FORMATS
from ipgeo.geo.models import FIELDS
from ipgeo.web.errors import ApiError
from ipgeo.web.exchange import BoundedTable, Exchange, parsed_accept

EXCHANGE_KEY = "ipgeo.exchange"  # the environ key of the request's ``Exchange``

ALL_FIELDS: tuple[str, ...] = (*FIELDS, "addresses")
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{2,4})?$")
_ACCEPT_TO_FORMAT = {media: name for name, media in FORMATS.items()} | {"text/xml": "xml"}
_CLI_AGENTS = ("curl/", "wget/", "httpie/", "fetch/", "powershell/", "go-http-client/")


def current_exchange() -> Exchange:
    """The ``Exchange`` the request pipeline made for Flask's current request."""
    exchange: Exchange = request.environ[EXCHANGE_KEY]
    return exchange


def wants_plain_text(exchange: Exchange) -> bool:
    """True for curl, wget, HTTPie and friends, or an explicit ``Accept: text/plain``."""
    if exchange.user_agent.lower().startswith(_CLI_AGENTS):
        return True
    accept = exchange.accept
    return bool(accept) and accept.best == "text/plain"


def _format_for_accept(header: str) -> str:
    accept = parsed_accept(header)
    if not accept or "text/html" in accept.values():
        return "json"
    best = accept.best_match(["application/json", *_ACCEPT_TO_FORMAT], default="application/json")
    return _ACCEPT_TO_FORMAT.get(best or "application/json", "json")


_FORMAT_BY_ACCEPT: BoundedTable[str, str] = BoundedTable(_format_for_accept)


def output_format(exchange: Exchange) -> str:
    """The answer format from ``?format=`` or the ``Accept`` header (default JSON)."""
    fmt = exchange.arg("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise ApiError(
                400, "invalid_format", f"format must be one of {', '.join(FORMATS)}, not {fmt!r}"
            )
        return fmt
    return _FORMAT_BY_ACCEPT[exchange.header("HTTP_ACCEPT")]


def _fields(raw_and_extra: tuple[str, tuple[str, ...]]) -> tuple[str, ...] | ApiError | None:
    raw, extra = raw_and_extra
    if not raw.strip():
        return None
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    known = (*ALL_FIELDS, *extra)
    unknown = [name for name in names if name not in known]
    if unknown:
        return ApiError(
            400,
            "invalid_fields",
            f"unknown field(s) {', '.join(unknown)[:200]}; known fields: {', '.join(known)}",
        )
    return names


_FIELDS: BoundedTable[tuple[str, tuple[str, ...]], tuple[str, ...] | ApiError | None] = (
    BoundedTable(_fields)
)


def selected_fields(exchange: Exchange, extra: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The ``?fields=`` selection, validated (``None`` means all); ``extra`` names more fields."""
    raw = exchange.arg("fields")
    if raw is None:
        return None
    fields = _FIELDS[(raw, extra)]
    if isinstance(fields, ApiError):
        raise ApiError(fields.status, fields.code, fields.message)
    return fields


def language(exchange: Exchange) -> str | None:
    """The ``?lang=`` parameter, validated."""
    lang = exchange.arg("lang")
    if lang is None or lang == "":
        return None
    if not _LANG_RE.match(lang):
        raise ApiError(400, "invalid_lang", "lang must be a language code such as 'de' or 'pt-BR'")
    return lang
