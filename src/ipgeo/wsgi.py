"""WSGI entry point for uWSGI and gunicorn: ``ipgeo.wsgi:app``."""

from __future__ import annotations

import gc
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ipgeo.geo import DatabaseError
from ipgeo.logs import setup_logging
from ipgeo.metrics import enable_multiprocess, mark_process_dead, multiprocess_dir
from ipgeo.settings import Settings, SettingsError
from ipgeo.web import create_app


def _remove_stale(base: Path, prefix: str) -> None:
    """Delete metrics directories left by uWSGI masters that no longer run."""
    for old in base.glob(f"{prefix}*"):
        pid = old.name.removeprefix(prefix)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)


def _prepare_uwsgi() -> None:
    """Under uWSGI with several workers, aggregate metrics in a private directory."""
    try:
        uwsgi = importlib.import_module("uwsgi")  # only exists inside uWSGI
    except ImportError:
        return
    if multiprocess_dir() is None and int(uwsgi.numproc) > 1:
        master = int(uwsgi.masterpid()) or os.getppid()
        base = Path(tempfile.gettempdir())
        directory = base / f"ipgeo-metrics-{os.getuid()}-{master}"
        # Loaded in the master (the default): start empty. With lazy-apps every worker
        # loads the app itself and they share the master's directory.
        if os.getpid() == master:
            _remove_stale(base, f"ipgeo-metrics-{os.getuid()}-")
        enable_multiprocess(directory, clean=os.getpid() == master)
    if multiprocess_dir() is not None and getattr(uwsgi, "atexit", None) is None:
        setattr(uwsgi, "atexit", lambda: mark_process_dead(os.getpid()))  # noqa: B010


# Settings defaults a uWSGI config may give as placeholders (``set-placeholder =
# ipgeo-access-log=false``): uWSGI's ``env`` option does not reach ``os.environ`` under pyuwsgi,
# whose Python starts before the config is read. The environment still wins.
UWSGI_DEFAULTS = {"ipgeo-access-log": "IPGEO_ACCESS_LOG"}


def _uwsgi_defaults() -> None:
    try:
        uwsgi = importlib.import_module("uwsgi")
    except ImportError:
        return
    for option, name in UWSGI_DEFAULTS.items():
        value = uwsgi.opt.get(option)
        if value is not None and name not in os.environ:
            os.environ[name] = value.decode() if isinstance(value, bytes) else str(value)


def _build() -> object:
    try:
        _uwsgi_defaults()
        settings = Settings.from_env()
        setup_logging(settings.log_format)
        _prepare_uwsgi()
        app = create_app(settings)
    except (SettingsError, DatabaseError) as exc:
        print(f"ipgeo: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    # What loading made (modules, the app, the readers) lives as long as the process: keep
    # it out of every garbage collection. uWSGI forks its workers right after this, so the
    # collector does not touch (and copy) those shared pages either.
    gc.freeze()
    return app


app = _build()
