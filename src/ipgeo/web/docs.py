"""The ``/docs`` page, rendered from the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ipgeo.web.openapi import openapi_document

docs = Blueprint("docs", __name__)


@docs.get("/docs")
def api_docs() -> str:
    """Human-readable API reference."""
    base = request.host_url.rstrip("/")
    return render_template("docs.html", spec=openapi_document(base), base=base)
