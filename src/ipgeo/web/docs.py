"""The ``/docs`` page, rendered from the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from markupsafe import Markup, escape

from ipgeo.web.openapi import openapi_document

docs = Blueprint("docs", __name__)

# Examples whose arguments the path alone cannot give; ``{base}`` is the service's URL.
_EXAMPLES: dict[tuple[str, str], list[str]] = {
    ("post", "/api/v1/batch"): [
        "curl -X POST -H 'Content-Type: application/json' -d '[\"8.8.8.8\",\"1.1.1.1\"]' "
        "{base}/api/v1/batch"
    ],
    ("post", "/api/v1/jobs"): [
        "curl -F file=@access.log {base}/api/v1/jobs",
        "curl -F file=@ips.txt -F mode=unique -F fields=ip,country_iso,hits {base}/api/v1/jobs",
        "curl -H 'Content-Type: text/plain' --data-binary @ips.txt "
        "'{base}/api/v1/jobs?name=ips.txt'",
    ],
    ("get", "/api/v1/jobs/{job_id}"): [
        "JOB=$(curl -s -F file=@access.log {base}/api/v1/jobs | jq -r .id)",
        "curl {base}/api/v1/jobs/$JOB",
    ],
    ("get", "/api/v1/jobs/{job_id}/result"): [
        "curl -OJ '{base}/api/v1/jobs/$JOB/result?format=csv'"
    ],
    ("delete", "/api/v1/jobs/{job_id}"): ["curl -X DELETE {base}/api/v1/jobs/$JOB"],
}


@docs.app_template_filter("inline_code")
def inline_code(text: str | None) -> Markup:
    """Escape ``text`` and show its `backticked` parts as code, as the OpenAPI text intends."""
    html = Markup("")
    for index, part in enumerate((text or "").split("`")):
        html += Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
    return html


def try_url(method: str, path: str) -> str | None:
    """A URL to open in the browser for a GET operation, when one needs no made-up id."""
    if method != "get" or "{job_id}" in path:
        return None
    return path.replace("{query}", "8.8.8.8")


def curl_examples(method: str, path: str, base: str) -> list[str]:
    """Shell commands that call the operation."""
    examples = _EXAMPLES.get((method, path))
    if examples is not None:
        return [example.format(base=base) for example in examples]
    url = try_url(method, path) or path
    return [f"curl {base}{url}" if method == "get" else f"curl -X {method.upper()} {base}{url}"]


@docs.get("/docs")
def api_docs() -> str:
    """Human-readable API reference."""
    base = request.host_url.rstrip("/")
    return render_template(
        "docs.html",
        spec=openapi_document(base),
        base=base,
        try_url=try_url,
        curl_examples=curl_examples,
    )
