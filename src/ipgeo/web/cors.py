"""CORS headers for the GET API (``IPGEO_CORS_ORIGINS``), decided by flask-cors' own rules.

flask-cors computes the headers (``get_cors_headers`` with the options the app always gave
it); this module only says which paths they apply to and remembers the headers per
``Origin``, since only preflights depend on more than that.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from flask_cors.core import DEFAULT_OPTIONS, get_cors_headers, serialize_options
from werkzeug.datastructures import EnvironHeaders

from ipgeo.web.exchange import BoundedTable, Exchange

# GET endpoints that browsers on other origins may call.
CORS_PATHS = re.compile(
    r"^/(api/v1/(lookup|meta)/?.*|api/openapi\.json"
    r"|json|ip|country|country-iso|city|coordinates|timezone|asn)$"
)

Headers = list[tuple[str, str]]


class CorsPolicy:
    """The ``Access-Control-*`` headers of an answer, for the configured origins."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.options: Any = serialize_options(
            {
                **DEFAULT_OPTIONS,
                "origins": list(origins),
                "methods": ["GET", "HEAD", "OPTIONS"],
                "max_age": 86400,
                "send_wildcard": origins == ("*",),
                "vary_header": True,
            }
        )
        self._by_origin: BoundedTable[tuple[str | None, str | None], Headers] = BoundedTable(
            lambda key: self._compute(_request_headers(*key), "GET")
        )

    def headers(self, exchange: Exchange) -> Headers:
        """The CORS headers for ``exchange``'s answer (none outside the API's paths)."""
        if not CORS_PATHS.match(unquote(exchange.path)):
            return []
        environ = exchange.environ
        if exchange.method == "OPTIONS":
            return self._compute(environ, "OPTIONS")
        return self._by_origin[
            (
                environ.get("HTTP_ORIGIN"),
                environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"),
            )
        ]

    def _compute(self, environ: dict[str, Any], method: str) -> Headers:
        computed = get_cors_headers(self.options, EnvironHeaders(environ), method)
        return [(name, str(value)) for name, value in computed.items()]


def _request_headers(origin: str | None, private_network: str | None) -> dict[str, str]:
    """The request headers a non-preflight answer's CORS headers depend on, as an environ."""
    environ = {}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    if private_network is not None:
        environ["HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"] = private_network
    return environ
