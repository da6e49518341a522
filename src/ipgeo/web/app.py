"""The application factory."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Flask, url_for
from flask_cors import CORS

from ipgeo import __version__
from ipgeo.geo import ATTRIBUTION, GeoService
from ipgeo.settings import Settings
from ipgeo.web.api import api
from ipgeo.web.docs import docs
from ipgeo.web.errors import register_error_handlers
from ipgeo.web.plain import database_check, plain

# GET endpoints that browsers on other origins may call.
CORS_PATHS = (
    r"^/(api/v1/(lookup|meta)/?.*|api/openapi\.json"
    r"|json|ip|country|country-iso|city|coordinates|timezone|asn)$"
)


def create_app(settings: Settings | None = None, service: GeoService | None = None) -> Flask:
    """Build the application; opens the databases unless a ``service`` is given."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ipgeo.settings"] = settings
    geo = app.extensions["ipgeo.geo"] = service or GeoService.from_settings(settings)
    app.extensions["ipgeo.readiness"] = {"database": database_check}
    timezones_health = getattr(geo.timezones, "health", None)
    if callable(timezones_health):  # the PostGIS locator: degraded while it falls back
        app.extensions["ipgeo.readiness"]["postgres"] = timezones_health
    if settings.cors_origins:
        CORS(
            app,
            resources={CORS_PATHS: {"origins": list(settings.cors_origins)}},
            methods=["GET", "HEAD", "OPTIONS"],
            max_age=86400,
        )
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(plain)
    app.register_blueprint(docs)

    static_dir = Path(app.static_folder or "")

    @cache
    def _static_hash(filename: str) -> str:
        path = static_dir / filename
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else "0"

    @app.context_processor
    def _template_globals() -> dict[str, object]:
        def asset(filename: str) -> str:
            return url_for("static", filename=filename, v=_static_hash(filename))

        return {"asset": asset, "attribution": ATTRIBUTION, "version": __version__}

    return app
