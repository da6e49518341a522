"""A private PostgreSQL 15 + PostGIS server for tests, on a free port, via pytest-postgresql.

``pg_ctl`` and ``initdb`` refuse to run as root (CI runs as root): then they run as the
``postgres`` system user (created by Debian's ``postgresql`` package) through ``runuser``, in a
temporary directory that user owns. As any other user they run directly.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from port_for import get_port
from pytest_postgresql.executors import PostgreSQLExecutor

PG_BIN = Path(os.environ.get("IPGEO_PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
# Throw-away data: durability off makes loading polygons much faster.
FAST_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _pg_ctl(workdir: Path) -> str:
    """The pg_ctl to run: the real one, or a wrapper that runs it as ``postgres`` under root."""
    if os.geteuid() != 0:
        return str(PG_BIN / "pg_ctl")
    owner = pwd.getpwnam("postgres")
    os.chown(workdir, owner.pw_uid, owner.pw_gid)
    wrapper = workdir / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{PG_BIN}/pg_ctl" "$@"\n')
    wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return str(wrapper)


@contextmanager
def postgis_server(dbname: str = "ipgeo") -> Iterator[PostgreSQLExecutor]:
    """Start a private server with an empty database ``dbname``; stop and delete it after."""
    if not (PG_BIN / "pg_ctl").exists() or not POSTGIS_CONTROL.exists():
        pytest.fail("PostgreSQL 15 with PostGIS missing: run `make system-deps`")
    workdir = Path(tempfile.mkdtemp(prefix="ipgeo-pg-"))
    workdir.chmod(0o755)
    port = get_port(None)
    assert port is not None
    executor = PostgreSQLExecutor(
        executable=_pg_ctl(workdir),
        host="127.0.0.1",
        port=port,
        datadir=str(workdir / "data"),
        unixsocketdir=str(workdir),
        logfile=str(workdir / "postgresql.log"),
        startparams="-w",
        dbname=dbname,
        postgres_options=FAST_OPTIONS,
    )
    try:
        start(executor)
        with psycopg.connect(admin_url(executor), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"'.encode())
        yield executor
    finally:
        if executor.running():
            executor.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start(executor: PostgreSQLExecutor, seconds: float = 60.0) -> None:
    """Start the server and wait until it accepts connections (not merely its port)."""
    executor.start()
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(admin_url(executor), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def admin_url(executor: PostgreSQLExecutor) -> str:
    """URL of the maintenance database."""
    return f"postgresql://postgres@{executor.host}:{executor.port}/postgres"


def database_url(executor: PostgreSQLExecutor) -> str:
    """URL of the test database."""
    return f"postgresql://postgres@{executor.host}:{executor.port}/{executor.dbname}"
