"""The OpenAPI description of the MaxMind-compatible web service (``/geoip/v2.1/``)."""

from __future__ import annotations

from typing import Any

from ipgeo.webservice import ERROR_CONTENT_TYPE, KINDS, content_type

_MEDIA_ERROR = ERROR_CONTENT_TYPE.split(";")[0]
_CLIENT_SNIPPET = (
    "import geoip2.webservice\n"
    'client = geoip2.webservice.Client(42, "license_key", host="ipgeo.example:8443")\n'
    'client.city("81.2.69.142").city.name'
)
_NAME_PROPERTIES: dict[str, Any] = {
    "geoname_id": {"type": "integer"},
    "names": {"type": "object", "additionalProperties": {"type": "string"}},
}
_NAMED = {"type": "object", "properties": _NAME_PROPERTIES}
_ANSWER = {
    "type": "object",
    "description": "MaxMind's GeoIP2 web-service answer: the database record as it holds it "
    "(names in every language, geoname ids), `traits` with `ip_address`, `network` and, with "
    "an ASN database, `autonomous_system_number` and `autonomous_system_organization` (city "
    "and insights), and `maxmind.queries_remaining`.",
    "required": ["traits", "maxmind"],
    "properties": {
        "continent": {
            "type": "object",
            "properties": {**_NAME_PROPERTIES, "code": {"type": "string"}},
        },
        "country": _NAMED,
        "registered_country": _NAMED,
        "represented_country": _NAMED,
        "city": _NAMED,
        "location": {"type": "object"},
        "postal": {"type": "object"},
        "subdivisions": {"type": "array", "items": _NAMED},
        "traits": {
            "type": "object",
            "required": ["ip_address", "network"],
            "properties": {
                "ip_address": {"type": "string"},
                "network": {"type": "string"},
                "autonomous_system_number": {"type": "integer"},
                "autonomous_system_organization": {"type": "string"},
            },
        },
        "maxmind": {
            "type": "object",
            "properties": {"queries_remaining": {"type": "integer"}},
        },
    },
}
_ERROR = {
    "type": "object",
    "required": ["code", "error"],
    "properties": {"code": {"type": "string"}, "error": {"type": "string"}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_MEDIA_ERROR: {"schema": {"$ref": "#/components/schemas/WebServiceError"}}},
    }


def webservice_paths() -> dict[str, Any]:
    """The ``/geoip/v2.1/{kind}/{address}`` operations."""
    paths: dict[str, Any] = {}
    for kind in KINDS:
        media = content_type(kind).split(";")[0]
        paths[f"/geoip/v2.1/{kind}/{{address}}"] = {
            "get": {
                "tags": ["MaxMind GeoIP2 web service"],
                "summary": f"MaxMind's GeoIP2 {kind} web service, drop-in"
                + (" (answers what city does)" if kind == "insights" else ""),
                "description": "MaxMind's official clients work unchanged when pointed at "
                "ipgeo (`host=`), for example:\n\n```python\n"
                + _CLIENT_SNIPPET.replace("city", kind, 1 if kind == "city" else 0)
                + "\n```\n\nCredentials are HTTP basic auth (account id, license key), "
                "checked against `IPGEO_WEBSERVICE_ACCOUNTS` when it is set.",
                "security": [{}, {"maxmindAccount": []}],  # optional: only with accounts set
                "parameters": [
                    {
                        "name": "address",
                        "in": "path",
                        "required": True,
                        "description": "An IPv4 or IPv6 address, or `me` for the caller.",
                        "schema": {
                            "type": "string",
                            "pattern": "^(me|[0-9A-Fa-f:][0-9A-Fa-f.:]*)$",
                        },
                    }
                ],
                "responses": {
                    "200": {
                        "description": f"The {kind} answer (`Content-Type: {content_type(kind)}`).",
                        "content": {
                            media: {"schema": {"$ref": "#/components/schemas/WebServiceAnswer"}}
                        },
                    },
                    "400": _error("`IP_ADDRESS_INVALID`: not an IP address."),
                    "401": _error(
                        "`ACCOUNT_ID_REQUIRED` or `AUTHORIZATION_INVALID`: no or unknown "
                        "credentials (only with `IPGEO_WEBSERVICE_ACCOUNTS`)."
                    ),
                    "404": _error(
                        "`IP_ADDRESS_RESERVED` (private, loopback, …) or "
                        "`IP_ADDRESS_NOT_FOUND` (not in the database)."
                    ),
                    "503": {"description": "Database unavailable."},
                },
            }
        }
    return paths


def webservice_components(schemas: dict[str, Any]) -> dict[str, Any]:
    """The document's components: ``schemas`` and the web service's schemas and security."""
    return {
        "schemas": {**schemas, "WebServiceAnswer": _ANSWER, "WebServiceError": _ERROR},
        "securitySchemes": {"maxmindAccount": {"type": "http", "scheme": "basic"}},
    }
