#!/bin/sh
# PostgreSQL 15 + PostGIS for ipgeo's time-zone polygons: initialise the cluster on first
# start (user, password and database from the environment), then run the server in front.
set -eu
: "${POSTGRES_USER:=ipgeo}" "${POSTGRES_DB:=ipgeo}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgis: POSTGRES_PASSWORD is not set (see .env.example)" >&2
    exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
        -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
        -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    # Password logins from the compose network; the data never leaves it.
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "postgis: initialised database $POSTGRES_DB"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
