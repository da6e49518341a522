"""The OpenAPI 3 document of the HTTP API (also rendered as the ``/docs`` page)."""

from __future__ import annotations

from typing import Any

from ipgeo import __version__
from ipgeo.geo.models import FIELDS
from ipgeo.web.openapi_fields import FIELD_SCHEMAS
from ipgeo.web.openapi_jobs import job_schemas, jobs_paths
from ipgeo.web.openapi_webservice import webservice_components, webservice_paths

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


_STATUS = {"type": "string", "enum": ["ok", "degraded", "down"]}
_READINESS = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": _STATUS,
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": _STATUS,
                    "type": {"type": "string", "description": "Database type."},
                    "path": {"type": "string"},
                    "build_date": {"type": "string", "format": "date-time"},
                    "age_days": {"type": "number"},
                    "generation": {"type": "integer", "description": "Reloads + 1."},
                    "reload_error": {"type": "string"},
                    "problem": {"type": "string"},
                    "error": {"type": "string"},
                },
            },
        },
    },
}
_TRACE_HEADERS = {
    "X-Database-Build": {
        "description": "Build time of the City/Country database that answered (ISO 8601).",
        "schema": {"type": "string"},
    },
    "X-Request-ID": {
        "description": "The request's id (the caller's `X-Request-ID` when sane, else new).",
        "schema": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


_QUERY_PARAMS: list[dict[str, Any]] = [
    {
        "name": "fields",
        "in": "query",
        "description": "Comma-separated field names to return.",
        "schema": {"type": "string"},
        "example": "country_iso,city",
    },
    {
        "name": "lang",
        "in": "query",
        "description": "Language for names (falls back to English).",
        "schema": {"type": "string"},
        "example": "de",
    },
    {
        "name": "format",
        "in": "query",
        "description": "Answer format (or use the Accept header).",
        "schema": {"type": "string", "enum": ["json", "xml", "csv", "text"]},
    },
]

_RESULT_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/Lookup"}},
    "application/xml": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}},
}

_OWN_CONTENT = {
    **_RESULT_CONTENT,
    "application/json": {"schema": {"$ref": "#/components/schemas/OwnLookup"}},
}

_VISITS = {
    "type": "integer",
    "minimum": 1,
    "description": "How many times this client IP has called `/json` or viewed `/`, this call "
    "included. Present only when Redis is configured and reachable.",
    "example": 42,
}

# Probes are never refused nor rate limited.
_OPEN_PATHS = ("/healthz", "/readyz")
# Refused outside the allowlist but never rate limited (job status polls).
_UNLIMITED_OPERATIONS = {("/api/v1/jobs/{job_id}", "get")}

_FIELD_ENDPOINTS = {
    "country": "Country name",
    "country-iso": "ISO country code",
    "city": "City name",
    "coordinates": "`latitude,longitude`",
    "timezone": "IANA time zone",
    "asn": "`AS<number>` (needs an ASN database)",
}


def _paths() -> dict[str, Any]:
    ip_param = {
        "name": "ip",
        "in": "query",
        "description": "Address to look up instead of the caller's.",
        "schema": {"type": "string"},
    }
    paths: dict[str, Any] = {
        "/api/v1/lookup/{query}": {
            "get": {
                "summary": "Look up an IP address or a domain name",
                "tags": ["lookup"],
                "parameters": [
                    {
                        "name": "query",
                        "in": "path",
                        "required": True,
                        "description": "IPv4, IPv6 or domain name.",
                        "schema": {"type": "string"},
                        "example": "8.8.8.8",
                    },
                    *_QUERY_PARAMS,
                ],
                "responses": {
                    "200": {
                        "description": "The location.",
                        "content": _RESULT_CONTENT,
                        "headers": _TRACE_HEADERS,
                    },
                    "400": _error("Invalid query or parameter."),
                    "404": _error("Not in the database, reserved address or unresolvable."),
                    "503": _error("Database unavailable."),
                },
            }
        },
        "/api/v1/batch": {
            "post": {
                "summary": "Look up many queries at once",
                "tags": ["lookup"],
                "parameters": [p for p in _QUERY_PARAMS if p["name"] != "format"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "example": ["8.8.8.8", "2001:4860:4860::8888", "example.com"],
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "One item per query, in order: a lookup or an error.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/BatchItem"},
                                }
                            }
                        },
                    },
                    "400": _error("The body is not a JSON array of strings."),
                    "413": _error("Too many queries."),
                },
            }
        },
        "/api/v1/meta": {
            "get": {
                "summary": "Service version, database metadata and attribution",
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "Metadata.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/json": {
            "get": {
                "summary": "The caller's own lookup, with its visit count",
                "tags": ["what is my IP"],
                "parameters": _QUERY_PARAMS,
                "responses": {
                    "200": {"description": "The caller's location.", "content": _OWN_CONTENT},
                    "400": _error("Invalid parameter."),
                },
            }
        },
        "/ip": {
            "get": {
                "summary": "The caller's IP address",
                "tags": ["what is my IP"],
                "responses": {
                    "200": _text("The address and a newline."),
                    "400": _error("The server was given no client address."),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness of each dependency",
                "description": (
                    "`checks` has one entry per dependency: `database` (the City/Country "
                    "database: type, path, build date, age in days, reload generation; "
                    "`degraded` when a replaced file failed to load or it is older than "
                    "`IPGEO_DB_MAX_AGE_DAYS`), `asn_database`, and Redis/PostgreSQL where "
                    "configured. 503 only when lookups cannot be served. Clients outside "
                    "`IPGEO_METRICS_ALLOWED` get only the `status` of each check."
                ),
                "tags": ["service"],
                "responses": {
                    code: {
                        "description": text,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Readiness"}
                            }
                        },
                    }
                    for code, text in (
                        ("200", "Lookups can be served (status ok or degraded)."),
                        ("503", "Lookups cannot be served (status down)."),
                    )
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (metrics network only)",
                "description": "Only clients in `IPGEO_METRICS_ALLOWED` (default loopback).",
                "tags": ["service"],
                "responses": {
                    "200": _text("Prometheus text exposition format."),
                    "403": _error("The client is not in the metrics network."),
                },
            }
        },
    }
    for name, what in _FIELD_ENDPOINTS.items():
        paths[f"/{name}"] = {
            "get": {
                "summary": f"{what} of the caller (or of `ip`), as plain text",
                "tags": ["plain text"],
                "parameters": [ip_param],
                "responses": {
                    "200": _text("The value and a newline."),
                    "400": _error("Invalid address."),
                    "404": _error("Unknown for this address."),
                    "503": _error("Database unavailable."),
                },
            }
        }
    paths.update(jobs_paths())
    paths.update(webservice_paths())
    for path, operations in paths.items():
        if path in _OPEN_PATHS:
            continue
        for method, operation in operations.items():
            operation["responses"]["403"] = _error("The client IP is not in `IPGEO_ALLOWED`.")
            if (path, method) not in _UNLIMITED_OPERATIONS:
                operation["responses"]["429"] = _rate_limited()
    return paths


def _rate_limited() -> dict[str, Any]:
    seconds = {"schema": {"type": "integer"}}
    return {
        **_error("Rate limit (`IPGEO_RATE_LIMIT`) exceeded; a batch counts one per query."),
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", **seconds},
            "RateLimit-Limit": {"description": "Requests allowed in the window.", **seconds},
            "RateLimit-Remaining": {"description": "Requests left in the window.", **seconds},
            "RateLimit-Reset": {"description": "Seconds until the window resets.", **seconds},
        },
    }


def openapi_document(server_url: str = "") -> dict[str, Any]:
    """Build the OpenAPI document; ``server_url`` is the base URL the service is reached at."""
    lookup = {
        "type": "object",
        "description": "Every field is present (null when unknown) unless `fields` selects some.",
        "properties": {name: FIELD_SCHEMAS[name] for name in (*FIELDS, "addresses")},
    }
    own_lookup = {
        **lookup,
        "description": "The caller's lookup, plus `visits` when Redis is on.",
        "properties": {**lookup["properties"], "visits": _VISITS},  # type: ignore[dict-item]
    }
    batch_item = {
        "anyOf": [
            {"$ref": "#/components/schemas/Lookup"},
            {
                "type": "object",
                "required": ["query", "error"],
                "properties": {
                    "query": {"type": "string"},
                    "error": _ERROR["properties"]["error"],  # type: ignore[index]
                },
            },
        ]
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ipgeo",
            "version": __version__,
            "description": "Self-hosted IP geolocation: IPv4, IPv6 and domain lookups, and "
            "background jobs that geolocate whole files.",
            "license": {"name": "MIT"},
        },
        "servers": [{"url": server_url or "/"}],
        "paths": _paths(),
        "components": webservice_components(
            {
                "Lookup": lookup,
                "OwnLookup": own_lookup,
                "BatchItem": batch_item,
                "Error": _ERROR,
                "Readiness": _READINESS,
                **job_schemas(),
            }
        ),
    }
