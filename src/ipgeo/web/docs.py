"""The ``/docs`` page, rendered from the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from markupsafe import Markup, escape

from ipgeo.web.openapi import openapi_document

docs = Blueprint("docs", __name__)


@docs.app_template_filter("inline_code")
def inline_code(text: str | None) -> Markup:
    """Escape ``text`` and show its `backticked` parts as code, as the OpenAPI text intends."""
    html = Markup("")
    for index, part in enumerate((text or "").split("`")):
        html += Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
    return html


@docs.get("/docs")
def api_docs() -> str:
    """Human-readable API reference."""
    base = request.host_url.rstrip("/")
    return render_template("docs.html", spec=openapi_document(base), base=base)
