"""The API's one error type and its JSON rendering."""

from __future__ import annotations

from flask import Flask, Response
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

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> Response:
        """The Flask response."""
        return Response(to_json(self.as_dict()), status=self.status, mimetype="application/json")


def _http_code(exc: HTTPException) -> str:
    name = (exc.name or "error").lower()
    return "".join(ch if ch.isalnum() else "_" for ch in name)


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
        status = exc.code or 500
        error = ApiError(status, _http_code(exc), exc.description or exc.name)
        response = error.response()
        for header in ("Allow", "Retry-After"):
            value = exc.get_response().headers.get(header)
            if value:
                response.headers[header] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unexpected error")
        return ApiError(500, "internal_error", "an unexpected error occurred").response()
