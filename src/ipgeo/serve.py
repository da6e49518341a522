"""Running the app under gunicorn, the production WSGI server used by ``ipgeo serve``."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

log = logging.getLogger("ipgeo.serve")


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """Serve an already-built Flask app (databases opened once, shared by forked workers)."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply the options gunicorn knows to its configuration."""
        for key, value in self._options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        """Return the WSGI application."""
        return self._app


def serve(app: Flask, host: str, port: int, workers: int | None = None) -> None:
    """Serve ``app`` until interrupted; Ctrl-C or SIGTERM stop it cleanly."""
    count = workers or int(os.environ.get("WEB_CONCURRENCY", "0") or 0) or (os.cpu_count() or 1)
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": count,
        "worker_class": "gthread",
        "threads": 4,
        "preload_app": True,
        "accesslog": "-",
        "errorlog": "-",
        "graceful_timeout": 5,
        "keepalive": 5,
        "proc_name": "ipgeo",
        "control_socket_disable": True,  # gunicorn ≥ 24 would write a socket into $HOME
    }
    log.info("ipgeo listening on http://%s:%d (%d workers)", host, port, count)
    GunicornServer(app, options).run()
