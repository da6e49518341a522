"""HTML pages for people: "what is my IP" home and the lookup page (views stay thin)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from ipgeo.geo.queries import reserved_reason
from ipgeo.web.api import geo_service
from ipgeo.web.errors import ApiError
from ipgeo.web.params import current_exchange, language, wants_plain_text
from ipgeo.web.plain import caller_ip, count_visit, own_result

pages = Blueprint("pages", __name__)

# Examples offered next to the lookup form.
EXAMPLES = ("8.8.8.8", "2001:4860:4860::8888", "81.2.69.142")


@pages.app_template_filter("flag")
def flag_emoji(country_iso: str | None) -> str:
    """The emoji flag of an ISO 3166-1 alpha-2 code (regional indicator symbols), or ``""``."""
    code = (country_iso or "").upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in code)


@pages.app_template_filter("pretty_json")
def pretty_json(data: Any) -> str:
    """Indented JSON for showing a result to people."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


@pages.app_context_processor
def _page_globals() -> dict[str, object]:
    settings = current_app.extensions["ipgeo.settings"]
    return {
        "examples": EXAMPLES,
        "map_tiles": settings.maps.tiles,
        "map_attribution": settings.maps.attribution,
    }


# Characters left as they are in lookup paths (RFC 3986 path characters, minus the ambiguous).
_PATH_SAFE = ":@!$'()*,;="


def lookup_url(query: str, external: bool = False) -> str:
    """The page URL of a lookup (every character that could confuse a path is escaped)."""
    path = "/lookup/" + quote(query, safe=_PATH_SAFE)
    return request.host_url.rstrip("/") + path if external else path


def api_url(query: str) -> str:
    """The absolute JSON API URL of a lookup."""
    return request.host_url.rstrip("/") + "/api/v1/lookup/" + quote(query, safe=_PATH_SAFE)


@pages.get("/")
def home() -> Response | str:
    """The bare IP for command-line clients, the "what is my IP" page for browsers."""
    exchange = current_exchange()
    if wants_plain_text(exchange):
        return Response(f"{caller_ip(exchange)}\n", mimetype="text/plain")
    ip = caller_ip(exchange)
    result = own_result(geo_service(), exchange)
    return render_template(
        "home.html",
        ip=str(ip),
        result=result,
        located=result.country is not None or result.latitude is not None,
        reserved=reserved_reason(ip),
        visits=count_visit(current_app.extensions.get("ipgeo.visits"), exchange),
        api_url=api_url(str(ip)),
    )


@pages.get("/lookup")
@pages.get("/lookup/")
def lookup_form() -> WerkzeugResponse:
    """The lookup form's target: redirect ``?q=`` to the lookup page's permanent address."""
    query = request.args.get("q", "").strip()
    if not query:
        raise ApiError(400, "empty_query", "enter an IP address or a domain name to look up")
    return redirect(lookup_url(query), code=303)


@pages.get("/lookup/<path:query>")
def lookup(query: str) -> str:
    """Details, map, raw JSON and API examples for one IP address or domain name."""
    result = geo_service().lookup(query, lang=language(current_exchange()))
    return render_template(
        "lookup.html",
        query=query,
        result=result,
        permalink=lookup_url(query, external=True),
        api_url=api_url(query),
        base_url=request.host_url.rstrip("/"),
    )
