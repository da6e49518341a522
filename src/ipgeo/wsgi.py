"""WSGI entry point for uWSGI and gunicorn: ``ipgeo.wsgi:app``."""

from __future__ import annotations

import sys

from ipgeo.geo import DatabaseError
from ipgeo.settings import Settings, SettingsError
from ipgeo.web import create_app

try:
    app = create_app(Settings.from_env())
except (SettingsError, DatabaseError) as exc:
    print(f"ipgeo: cannot start: {exc}", file=sys.stderr)
    raise SystemExit(1) from None
