"""The application factory."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, render_template, request, url_for

from ipgeo import __version__
from ipgeo.geo import GeoService, attribution_text, attributions
from ipgeo.settings import Settings
from ipgeo.web.dashboard import init_dashboard
from ipgeo.web.docs import docs
from ipgeo.web.errors import register_error_handlers
from ipgeo.web.job_pages import job_pages
from ipgeo.web.jobs_api import jobs_api, publish_data_dir
from ipgeo.web.pages import pages
from ipgeo.web.pipeline import REFUSAL_KEY, RequestPipeline
from ipgeo.web.protection import Protection, Refusal, init_redis
from ipgeo.web.readiness import asn_database_check, database_check
from ipgeo.web.routes import pipeline_routes, register_routes


def content_security_policy(map_tiles: str = "") -> str:
    """Pages load scripts, styles and data from the app only (plus opted-in map tiles)."""
    tiles = ""
    if map_tiles:
        parts = urlsplit(map_tiles.replace("{s}", "*"))
        tiles = f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{tiles}; connect-src 'self'; font-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


def create_app(settings: Settings | None = None, service: GeoService | None = None) -> Flask:
    """Build the application; opens the databases unless a ``service`` is given.

    Its WSGI callable is the request pipeline (``ipgeo.web.pipeline``), which runs every
    request's stages and answers the API itself; Flask answers pages, docs and jobs.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    # "//" in a lookup path is part of a (bad) query: answer it, do not redirect it away.
    app.url_map.merge_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ipgeo.settings"] = settings
    geo = app.extensions["ipgeo.geo"] = service or GeoService.from_settings(settings)
    app.extensions["ipgeo.readiness"] = {
        "database": database_check(geo, settings.db_max_age_days),
        "asn_database": asn_database_check(geo),
    }
    timezones_health = getattr(geo.timezones, "health", None)
    if callable(timezones_health):  # the PostGIS locator: degraded while it falls back
        app.extensions["ipgeo.readiness"]["postgres"] = timezones_health
    guard = init_redis(app, settings)
    if guard is not None:
        publish_data_dir(guard.client, settings)
    register_error_handlers(app)
    app.before_request(_show_refusal)
    routes = pipeline_routes(app)
    register_routes(app, routes)
    app.register_blueprint(docs)
    app.register_blueprint(pages)
    app.register_blueprint(jobs_api)
    app.register_blueprint(job_pages)
    csp = content_security_policy(settings.maps.tiles)

    @app.after_request
    def _page_headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", csp)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        elif request.endpoint == "static" and request.args.get("v") and response.status_code == 200:
            # ``asset()`` URLs carry a content hash, so they never change.
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    static_dir = Path(app.static_folder or "")

    @cache
    def _static_hash(filename: str) -> str:
        path = static_dir / filename
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else "0"

    @app.context_processor
    def _template_globals() -> dict[str, object]:
        def asset(filename: str) -> str:
            return url_for("static", filename=filename, v=_static_hash(filename))

        geo.refresh()  # the credits follow the data in service: after a reload, the new one
        databases = geo.databases
        return {
            "asset": asset,
            "attribution": attribution_text(databases),
            "attributions": attributions(databases),
            "served_database": databases[0],
            "version": __version__,
        }

    # Last, so that its headers are set before the pages' defaults.
    init_dashboard(app, settings)
    # After everything: every request enters through the pipeline, Flask's own callable last.
    app.wsgi_app = RequestPipeline(  # type: ignore[method-assign]
        app, app.wsgi_app, routes, Protection(settings, guard)
    )
    return app


def _show_refusal() -> Response | None:
    """Show a refusal of the request pipeline as a page (the first before-request hook)."""
    refusal: Refusal | None = request.environ.get(REFUSAL_KEY)
    if refusal is None:
        return None
    if refusal.who:
        return Response(render_template("forbidden.html", ip=refusal.who), status=403)
    raise refusal.error
