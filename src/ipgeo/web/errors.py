"""The API's one error type, rendered as JSON for the API and as an HTML page for people."""

from __future__ import annotations

from flask import Flask, Response, render_template, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException

from ipgeo.formats import to_json
from ipgeo.geo.errors import GeoError

# HTTP status for each domain error code.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_query": 400,
    "not_found": 404,
    "reserved_address": 404,
    "unresolvable": 404,
    "database_unavailable": 503,
}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_geo(cls, error: GeoError) -> ApiError:
        """Translate a domain error into its API form."""
        return cls(STATUS_BY_CODE.get(error.code, 400), error.code, error.message)

    @classmethod
    def from_http(cls, exc: HTTPException) -> ApiError:
        """Translate a Werkzeug HTTP error (404, 405, 413, ...) into its API form."""
        name = (exc.name or "error").lower()
        code = "".join(ch if ch.isalnum() else "_" for ch in name)
        return cls(exc.code or 500, code, exc.description or exc.name)

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}

    def json(self) -> bytes:
        """The JSON body, serialized."""
        return to_json(self.as_dict())

    def response(self) -> Response:
        """The Flask response: JSON, or an HTML page when a person asked for a page."""
        if wants_error_page():
            return error_page(self)
        return Response(self.json(), status=self.status, mimetype="application/json")


# Blueprints whose errors are pages; unknown URLs get a page when a browser asks.
PAGE_BLUEPRINTS = frozenset({"pages", "docs", "job_pages"})
_API_PREFIXES = ("/api/", "/static/")

# Headline of the error page for each error code (the message gives the details).
PAGE_TITLES: dict[str, str] = {
    "invalid_query": "That is not an IP address or a domain name",
    "empty_query": "Nothing to look up",
    "not_found": "No location is known for this address",
    "reserved_address": "This address has no public location",
    "unresolvable": "That domain name does not resolve",
    "database_unavailable": "The location database is unavailable",
    "page_not_found": "Page not found",
    "invalid_lang": "Unknown language",
}


def prefers_html(accept: MIMEAccept) -> bool:
    """True when ``Accept`` ranks an HTML page above JSON (a browser)."""
    return accept.best_match(["application/json", "text/html"]) == "text/html"


def error_page_wanted(blueprint: str | None, path: str, agent: str, accept: MIMEAccept) -> bool:
    """Whether an error answer should be an HTML page (pages, or a browser on an unknown URL)."""
    if blueprint in PAGE_BLUEPRINTS:
        return not agent.lower().startswith(("curl/", "wget/", "httpie/"))
    if blueprint is not None or path.startswith(_API_PREFIXES):
        return False
    return prefers_html(accept)


def wants_error_page() -> bool:
    """True when an error of the current request should be an HTML page, not JSON."""
    return error_page_wanted(
        request.blueprint, request.path, request.user_agent.string or "", request.accept_mimetypes
    )


def error_page(error: ApiError) -> Response:
    """The HTML page of an error, with the lookup form to try again."""
    query = (request.view_args or {}).get("query") or request.args.get("q") or ""
    title = PAGE_TITLES.get(error.code, "Something went wrong")
    if error.status == 404 and request.url_rule is None:
        title = PAGE_TITLES["page_not_found"]
    if error.status >= 500 and error.code not in PAGE_TITLES:
        title = "Something went wrong on our side"
    body = render_template(
        "error.html", error=error, title=title, query=query if error.status < 500 else ""
    )
    return Response(body, status=error.status, mimetype="text/html")


def register_error_handlers(app: Flask) -> None:
    """Render every error, including Werkzeug's and unexpected ones, as API JSON."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(GeoError)
    def _geo_error(exc: GeoError) -> Response:
        return ApiError.from_geo(exc).response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = ApiError.from_http(exc).response()
        for header in ("Allow", "Retry-After"):
            value = exc.get_response().headers.get(header)
            if value:
                response.headers[header] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unexpected error")
        return ApiError(500, "internal_error", "an unexpected error occurred").response()
