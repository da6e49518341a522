"""rq-dashboard at ``/admin/rq``, behind HTTP basic auth from the settings and the allowlist."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from flask import Flask, Request, Response, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ipgeo.settings import Settings
from ipgeo.web.params import EXCHANGE_KEY

log = logging.getLogger("ipgeo.web")

DASHBOARD_PREFIX = "/admin/rq"
DASHBOARD_BLUEPRINT = "rq_dashboard"
# rq-dashboard's templates use inline scripts and styles; everything still comes from the app.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _json_worker_class() -> type:
    """``rq.Worker`` listing workers with the JSON serializer.

    rq-dashboard 0.9 lists workers without passing its serializer, so a worker busy with a
    JSON-serialized job would make its worker list fail; it gets this class instead.
    """
    from rq import Worker
    from rq.serializers import JSONSerializer

    class JSONWorker(Worker):
        @classmethod
        def all(cls, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("serializer", JSONSerializer)
            return super().all(*args, **kwargs)

    return JSONWorker


class LoginGuard:
    """Counts failed dashboard logins per client (``IPGEO_DASHBOARD_AUTH_LIMIT``).

    The counts live in Redis, so that every worker process shares them; ``limits``' moving
    window. A client past the limit gets 429 for each further wrong password; a correct one
    is never counted and always lets in. While Redis fails, nothing is counted.
    """

    def __init__(self, spec: str, redis_url: str) -> None:
        self.items = tuple(parse_many(spec)) if spec else ()
        self.limiter = MovingWindowRateLimiter(storage_from_string(redis_url))

    def refused(self, client: str) -> bool:
        """Count one failed login of ``client``: True when it is over the limit."""
        try:
            return not all(
                self.limiter.hit(item, "ipgeo-dashboard-login", client) for item in self.items
            )
        except redis.RedisError as exc:  # fail open
            log.warning("cannot count failed dashboard logins: %s", exc)
            return False


def _client(app_request: Request) -> str:
    """The client's address: the request pipeline's (trusted proxies believed), else the peer."""
    exchange = app_request.environ.get(EXCHANGE_KEY)
    ip = exchange.client_ip if exchange is not None else None
    return ip.compressed if ip is not None else app_request.remote_addr or "unknown"


def _authorized(settings: Settings) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.dashboard.user.encode())
    password_ok = hmac.compare_digest(
        (auth.password or "").encode(), settings.dashboard.password.encode()
    )
    return user_ok and password_ok


def init_dashboard(app: Flask, settings: Settings, prefix: str = DASHBOARD_PREFIX) -> bool:
    """Mount rq-dashboard when a user, a password and Redis are configured; True if mounted."""
    if not (settings.dashboard.user and settings.dashboard.password):
        return False
    if not settings.redis_url:
        log.warning("IPGEO_DASHBOARD_USER is set but there is no Redis: no dashboard")
        return False
    from rq.serializers import JSONSerializer
    from rq_dashboard import web as rq_dashboard_web

    rq_dashboard_web.config.serializer = JSONSerializer
    if not getattr(rq_dashboard_web.Worker, "_ipgeo_json", False):
        worker_class = _json_worker_class()
        worker_class._ipgeo_json = True  # type: ignore[attr-defined]
        rq_dashboard_web.Worker = worker_class
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    rq_dashboard_web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard_web.blueprint, url_prefix=prefix)

    guard = LoginGuard(settings.dashboard.auth_limit, settings.redis_url)

    @app.before_request
    def _dashboard_auth() -> Response | None:
        if request.blueprint != DASHBOARD_BLUEPRINT or _authorized(settings):
            return None
        if request.authorization is not None and guard.refused(_client(request)):
            return Response(
                "Too many failed logins for the job dashboard from this address; "
                "try again in a minute.\n",
                status=429,
                mimetype="text/plain",
                headers={"Retry-After": "60"},
            )
        return Response(
            "Authentication required for the job dashboard.\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="ipgeo jobs", charset="UTF-8"'},
        )

    @app.after_request
    def _dashboard_headers(response: Response) -> Response:
        if request.blueprint == DASHBOARD_BLUEPRINT:
            response.headers["Content-Security-Policy"] = DASHBOARD_CSP
            response.headers["Cache-Control"] = "no-store"
        return response

    return True


def create_dashboard_app(settings: Settings) -> Flask:
    """rq-dashboard alone (``ipgeo dashboard``), configured exactly as at ``/admin/rq``."""
    app = Flask("ipgeo.dashboard")
    if not init_dashboard(app, settings, prefix=""):
        raise RuntimeError(
            "the dashboard needs IPGEO_DASHBOARD_USER, IPGEO_DASHBOARD_PASSWORD and IPGEO_REDIS_URL"
        )

    @app.get("/healthz")
    def _healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    return app
