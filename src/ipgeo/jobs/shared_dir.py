"""Whether this process sees the job files the web app writes: a marker in the data directory.

Workers on other machines need the web app's Redis and its ``IPGEO_DATA_DIR`` on a shared
volume. Whoever starts first (the web app always, at start and when a job is submitted; a
worker only when Redis names no marker yet) writes ``IPGEO_DATA_DIR/jobs/.markers/<token>``
and records the token in Redis. A process that cannot read the marker Redis names does not
share the web app's files; a worker then takes no jobs (``BulkWorker``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path

import redis

from ipgeo.jobs.files import jobs_dir

log = logging.getLogger("ipgeo.jobs")

MARKER_KEY = "ipgeo:jobs:data-dir-marker"
# Markers of earlier starts are removed after a day (a checker may still be reading one).
MARKER_KEPT = 86400.0


def markers_dir(data_dir: Path) -> Path:
    """Where the markers live (ignored by the clean-up of job directories)."""
    return jobs_dir(data_dir) / ".markers"


def _write_marker(data_dir: Path) -> str:
    token = secrets.token_hex(16)
    directory = markers_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{token}.tmp"
    temporary.write_text(f"{token}\nwritten by {socket.gethostname()} pid {os.getpid()}\n")
    temporary.replace(directory / token)
    return token


def _remove_old_markers(data_dir: Path, keep: str) -> None:
    now = time.time()
    with contextlib.suppress(OSError):
        for path in markers_dir(data_dir).iterdir():
            with contextlib.suppress(OSError):
                if path.name != keep and now - path.stat().st_mtime > MARKER_KEPT:
                    path.unlink()


def publish_marker(connection: redis.Redis, data_dir: Path, replace: bool = True) -> str:
    """Write a new marker and name it in Redis (only if none is named, unless ``replace``).

    Returns the token Redis names afterwards. Raises ``OSError`` or ``redis.RedisError``.
    """
    token = _write_marker(data_dir)
    if replace:
        connection.set(MARKER_KEY, token)
    elif not connection.set(MARKER_KEY, token, nx=True):
        (markers_dir(data_dir) / token).unlink(missing_ok=True)
        named = connection.get(MARKER_KEY)
        return named.decode() if isinstance(named, bytes) else str(named or "")
    _remove_old_markers(data_dir, token)
    return token


def marker_visible(data_dir: Path, token: str) -> bool:
    """Whether the marker ``token`` can be read in ``data_dir``."""
    try:
        text = (markers_dir(data_dir) / token).read_text(errors="replace")
    except OSError:
        return False
    return text.split("\n", 1)[0] == token


def ensure_marker(connection: redis.Redis, data_dir: Path) -> None:
    """For the web app: make sure Redis names a marker in this data directory."""
    named = connection.get(MARKER_KEY)
    if isinstance(named, bytes) and marker_visible(data_dir, named.decode()):
        return
    publish_marker(connection, data_dir, replace=True)


def data_dir_problem(connection: redis.Redis, data_dir: Path) -> str | None:
    """For a worker: ``None`` when it sees the web app's job files, else why not.

    With no marker named yet (no web app has started), the worker names its own.
    Raises ``redis.RedisError``.
    """
    named = connection.get(MARKER_KEY)
    if named is None:
        try:
            token = publish_marker(connection, data_dir, replace=False)
        except OSError as exc:
            return f"cannot write to IPGEO_DATA_DIR={data_dir}: {exc}"
    else:
        token = named.decode() if isinstance(named, bytes) else str(named)
    if marker_visible(data_dir, token):
        return None
    return (
        f"this worker cannot see the job files of the web app: the marker "
        f"{markers_dir(data_dir) / token} that Redis names is not in IPGEO_DATA_DIR={data_dir}. "
        "Every worker needs the web app's Redis and the same IPGEO_DATA_DIR (a shared volume, "
        "e.g. NFS); it takes no jobs until it sees the marker"
    )
