"""Versioned SQL migrations for the PostgreSQL/PostGIS database, applied idempotently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Serialises migrations and polygon loads between processes (an arbitrary, fixed key).
ADVISORY_LOCK_KEY = 0x1B6E0


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of ``ipgeo/geo/postgis_sql``: ``NNNN_name.sql``."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("ipgeo.geo").joinpath("postgis_sql").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    return found


def apply_migrations(conn: psycopg.Connection[tuple[object, ...]]) -> list[Migration]:
    """Apply the migrations this database lacks in one transaction; return those applied."""
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration)
    return applied
