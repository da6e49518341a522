"""Who may change jobs: the same-origin check of state-changing requests, and owner tokens.

A job belongs to whoever created it: the creation answers an owner token (in the body, in
``X-Job-Token`` and, for browsers, in an HttpOnly SameSite cookie). Listing and deleting
need the token; reading a job by its unguessable id does not (the id is a capability link).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request
from werkzeug.wrappers.response import Response

from ipgeo import jobs
from ipgeo.web.errors import ApiError
from ipgeo.web.params import current_exchange

TOKEN_HEADER = "X-Job-Token"  # noqa: S105 (a header name)
TOKEN_COOKIE = "ipgeo_jobs"  # noqa: S105 (a cookie name)
TOKEN_COOKIE_AGE = 365 * 24 * 3600


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host name, port)`` of a URL (``None``: no port given); ``None`` if unreadable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def same_origin(sent: str, host_url: str) -> bool:
    """Whether the ``Origin`` (or ``Referer``) ``sent`` is the origin of ``host_url``.

    Scheme and host name must match. Ports are compared when the request's ``Host`` names
    one: nginx passes ``$host``, which drops the port the browser used, and then any port of
    the same scheme and host name passes.
    """
    theirs, ours = _origin_of(sent), _origin_of(host_url)
    if theirs is None or ours is None or theirs[:2] != ours[:2]:
        return False
    if ours[2] is None:
        return True
    return (theirs[2] or _DEFAULT_PORTS.get(theirs[0])) == ours[2]


def require_same_origin() -> None:
    """Refuse a request that a page of another site made (403).

    Browsers send ``Origin`` (or at least ``Referer``) with a cross-site form or ``fetch``;
    they must name this site, scheme included, as the client reached it (behind a trusted
    proxy: its ``X-Forwarded-Proto`` and ``Host``). Requests with neither header come from
    tools (curl, scripts), which a page cannot make a browser send, and are let through.
    """
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if sent is not None and not same_origin(sent, current_exchange().host_url):
        raise ApiError(
            403, "cross_origin", "jobs can only be submitted or changed from this site's pages"
        )


def presented_token() -> str | None:
    """The owner token the request presents: ``X-Job-Token``, a bearer token or the cookie."""
    token = request.headers.get(TOKEN_HEADER)
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    if not token:
        token = request.cookies.get(TOKEN_COOKIE)
    return token if token and jobs.OWNER_TOKEN_RE.match(token) else None


def owner_token() -> str:
    """The token a new job belongs to: the one presented, else a new one."""
    return presented_token() or jobs.new_owner_token()


def hand_over(response: Response, token: str) -> None:
    """Give the owner token to the client: a header, and an HttpOnly cookie for browsers."""
    response.headers[TOKEN_HEADER] = token
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=TOKEN_COOKIE_AGE,
        path="/",
        secure=current_exchange().host_url.startswith("https:"),
        httponly=True,
        samesite="Lax",
    )
