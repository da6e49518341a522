"""Reading request parameters: client IP, output format, fields and language."""

from __future__ import annotations

import ipaddress
import re

from flask import current_app, g, request

from ipgeo.clientip import client_ip
from ipgeo.formats import FORMATS
from ipgeo.geo.models import FIELDS
from ipgeo.web.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALL_FIELDS: tuple[str, ...] = (*FIELDS, "addresses")
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{2,4})?$")
_ACCEPT_TO_FORMAT = {media: name for name, media in FORMATS.items()} | {"text/xml": "xml"}
_CLI_AGENTS = ("curl/", "wget/", "httpie/", "fetch/", "powershell/", "go-http-client/")


def request_client_ip() -> IPAddress | None:
    """The real client address of the current request (cached on ``g``)."""
    if "client_ip" not in g:
        settings = current_app.extensions["ipgeo.settings"]
        g.client_ip = client_ip(
            request.remote_addr or "",
            request.headers.get("X-Forwarded-For"),
            request.headers.get("X-Real-IP"),
            settings.trusted_proxies,
        )
    ip: IPAddress | None = g.client_ip
    return ip


def wants_plain_text() -> bool:
    """True for curl, wget, HTTPie and friends, or an explicit ``Accept: text/plain``."""
    agent = (request.user_agent.string or "").lower()
    if agent.startswith(_CLI_AGENTS):
        return True
    accept = request.accept_mimetypes
    return bool(accept) and accept.best == "text/plain"


def output_format() -> str:
    """The answer format from ``?format=`` or the ``Accept`` header (default JSON)."""
    fmt = request.args.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise ApiError(
                400, "invalid_format", f"format must be one of {', '.join(FORMATS)}, not {fmt!r}"
            )
        return fmt
    accept = request.accept_mimetypes
    if not accept or "text/html" in accept.values():
        return "json"
    best = accept.best_match(["application/json", *_ACCEPT_TO_FORMAT], default="application/json")
    return _ACCEPT_TO_FORMAT.get(best or "application/json", "json")


def selected_fields(extra: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The ``?fields=`` selection, validated (``None`` means all); ``extra`` names more fields."""
    raw = request.args.get("fields")
    if raw is None or not raw.strip():
        return None
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    known = (*ALL_FIELDS, *extra)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ApiError(
            400,
            "invalid_fields",
            f"unknown field(s) {', '.join(unknown)[:200]}; known fields: {', '.join(known)}",
        )
    return names


def language() -> str | None:
    """The ``?lang=`` parameter, validated."""
    lang = request.args.get("lang")
    if lang is None or lang == "":
        return None
    if not _LANG_RE.match(lang):
        raise ApiError(400, "invalid_lang", "lang must be a language code such as 'de' or 'pt-BR'")
    return lang
