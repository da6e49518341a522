"""Running the app under gunicorn, the production WSGI server used by ``ipgeo serve``."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from ipgeo.metrics import enable_multiprocess, mark_process_dead, multiprocess_dir

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


def worker_count(workers: int | None = None) -> int:
    """Worker processes: ``workers``, else ``WEB_CONCURRENCY``, else one per CPU."""
    return workers or int(os.environ.get("WEB_CONCURRENCY", "0") or 0) or (os.cpu_count() or 1)


def prepare_metrics(count: int) -> None:
    """With several workers, switch metrics to multi-process mode in a private directory."""
    if count > 1 and multiprocess_dir() is None:
        directory = enable_multiprocess()
        atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)


def serve(app: Flask, host: str, port: int, workers: int | None = None) -> None:
    """Serve ``app`` until interrupted; Ctrl-C or SIGTERM stop it cleanly."""
    count = worker_count(workers)
    prepare_metrics(count)
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": count,
        "worker_class": "gthread",
        "threads": 4,
        "preload_app": True,
        "accesslog": None,  # the app logs each request itself (ipgeo.access)
        "child_exit": _child_exit,
        # gunicorn leaves SIGHUP at its default in workers: make it "check the databases".
        "post_worker_init": lambda worker: app.extensions["ipgeo.geo"].watch_sighup(),
        "errorlog": "-",
        "graceful_timeout": 5,
        "keepalive": 5,
        "proc_name": "ipgeo",
        "control_socket_disable": True,  # gunicorn ≥ 24 would write a socket into $HOME
    }
    log.info("ipgeo listening on http://%s:%d (%d workers)", host, port, count)
    GunicornServer(app, options).run()
