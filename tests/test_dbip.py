"""DB-IP Lite without an account, and serving the newest installed database (issue 17).

A local HTTP server publishes DB-IP-style monthly files; ``ipgeo db update --source
dbip-lite`` runs as a real process, and a real ``ipgeo serve`` switches to the new data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests

from ipgeo.dbupdate import ConfigError, build_config
from ipgeo.dbupdate.dbip import months
from ipgeo.settings import Settings
from tests.mmdbgen import city_record, write_mmdb
from tests.servers import AppServer, wait_until
from tests.test_redis_acceptance import server_env
from tests.updateserver import UpdateServer, dbip_month_path, gzip_bytes

CITY_TYPE = "DBIP-City-Lite"
ASN_TYPE = "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
PROBE = "81.2.69.142"


def _city(path: Path, city: str = "Dbipville") -> bytes:
    record = city_record("Germany", "DE", city, 52.5, 13.4, "Europe/Berlin")
    return write_mmdb(path, {"81.2.69.0/24": record}, CITY_TYPE).read_bytes()


def _asn(path: Path) -> bytes:
    record = {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Net"}
    return write_mmdb(path, {"81.2.69.0/24": record}, ASN_TYPE).read_bytes()


@pytest.fixture()
def server() -> Iterator[UpdateServer]:
    server = UpdateServer().start()
    yield server
    server.stop()


@pytest.fixture()
def previous_month(server: UpdateServer, tmp_path: Path) -> dict[str, bytes]:
    """Only last month's City and ASN files are published (this month's are not out yet)."""
    _, previous = months(datetime.now(UTC).date())
    files = {"city": _city(tmp_path / "city.mmdb"), "asn": _asn(tmp_path / "asn.mmdb")}
    for product, data in files.items():
        server.state.files[dbip_month_path(product, previous)] = gzip_bytes(data)
    return files


def _update(server: UpdateServer, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    variables = server_env(Path(env["IPGEO_DATA_DIR"]), IPGEO_DBIP_URL=f"{server.url}/free/")
    return subprocess.run(
        [sys.executable, "-m", "ipgeo", "db", "update", "--source", "dbip-lite"],
        env={**os.environ, **variables, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_months_roll_over_the_year() -> None:
    assert months(date(2026, 1, 15)) == ("2026-01", "2025-12")
    assert months(date(2026, 11, 30)) == ("2026-11", "2026-10")


def test_last_months_files_are_installed_when_this_months_are_not_out(
    server: UpdateServer, previous_month: dict[str, bytes], tmp_path: Path
) -> None:
    done = _update(server, {"IPGEO_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 0, done.stdout + done.stderr
    directory = tmp_path / "data" / "databases"
    assert (directory / "dbip-city-lite.mmdb").read_bytes() == previous_month["city"]
    assert (directory / "dbip-asn-lite.mmdb").read_bytes() == previous_month["asn"]
    assert f"updated to {CITY_TYPE}" in done.stdout
    current, previous = months(datetime.now(UTC).date())
    for product in ("city", "asn"):
        asked = [path for path in server.state.requests if f"dbip-{product}-lite" in path]
        assert asked == [dbip_month_path(product, current), dbip_month_path(product, previous)]
    assert sorted(path.name for path in directory.iterdir()) == [
        ".geoipupdate.lock", "dbip-asn-lite.mmdb", "dbip-city-lite.mmdb",
    ]  # fmt: skip
    again = _update(server, {"IPGEO_DATA_DIR": str(tmp_path / "data")})
    assert again.returncode == 0 and "dbip-city-lite.mmdb: up to date" in again.stdout


@pytest.mark.parametrize("broken", ["truncated", "wrong type", "HTML error page"])
def test_a_bad_download_leaves_the_old_files_in_place(
    server: UpdateServer, previous_month: dict[str, bytes], tmp_path: Path, broken: str
) -> None:
    env = {"IPGEO_DATA_DIR": str(tmp_path / "data")}
    assert _update(server, env).returncode == 0
    directory = tmp_path / "data" / "databases"
    installed = {path.name: path.read_bytes() for path in directory.glob("*.mmdb")}
    current, _ = months(datetime.now(UTC).date())
    published = dbip_month_path("city", current)  # this month's file is out now, but bad
    if broken == "truncated":
        fresh = gzip_bytes(_city(tmp_path / "new-city.mmdb", "Newer"))
        server.state.files[published] = fresh[: len(fresh) // 2]
    elif broken == "wrong type":
        server.state.files[published] = gzip_bytes(previous_month["asn"])
    else:
        server.state.files[published] = b"<!doctype html><title>Maintenance</title>"
        server.state.content_types[published] = "text/html; charset=utf-8"
    failed = _update(server, env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "dbip-city-lite.mmdb: FAILED" in failed.stderr
    assert {path.name: path.read_bytes() for path in directory.glob("*.mmdb")} == installed
    assert not [path for path in directory.iterdir() if path.name.startswith(".dbip")]


def test_a_running_server_switches_to_db_ip_without_a_restart(
    server: UpdateServer, previous_month: dict[str, bytes], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = server_env(data, IPGEO_DB_RELOAD_INTERVAL="0.2")
    with AppServer(env, tmp_path / "app.log", workers=2) as app:
        # The bundled 2019 database: stale, credited to MaxMind, one warning at start.
        home = requests.get(app.url, timeout=10).text
        assert "GeoLite2 data created by MaxMind" in home and "DB-IP" not in home
        assert re.search(r"built <time[^>]*>2019-12-\d\d</time>", home)
        assert requests.get(f"{app.url}/readyz", timeout=10).json()["status"] == "degraded"
        assert app.log().count("refresh it with: ipgeo db update --source dbip-lite") == 1

        done = _update(server, {"IPGEO_DATA_DIR": str(data)})
        assert done.returncode == 0, done.stdout + done.stderr

        def switched() -> bool:  # every worker: several requests in a row see DB-IP
            metas = [requests.get(f"{app.url}/api/v1/meta", timeout=5).json() for _ in range(8)]
            return all(m["databases"][0]["database_type"] == CITY_TYPE for m in metas)

        wait_until(switched, 30, "the server to serve DB-IP's files")
        meta = requests.get(f"{app.url}/api/v1/meta", timeout=10).json()
        assert [db["database_type"] for db in meta["databases"]] == [CITY_TYPE, ASN_TYPE]
        assert "IP Geolocation by DB-IP" in meta["attribution"]
        assert "MaxMind" not in meta["attribution"]
        answer = requests.get(f"{app.url}/api/v1/lookup/{PROBE}", timeout=10).json()
        assert (answer["city"], answer["asn"], answer["asn_org"]) == (
            "Dbipville", 64500, "Example Net",
        )  # fmt: skip
        home = requests.get(app.url, timeout=10).text
        assert '<a href="https://db-ip.com">IP Geolocation by DB-IP</a>' in home
        assert "MaxMind" not in home
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert f">{today}</time>" in home
        ready = requests.get(f"{app.url}/readyz", timeout=10).json()
        assert ready["status"] == "ok", ready
        assert ready["checks"]["asn_database"]["type"] == ASN_TYPE
        assert "databases reloaded" in app.log()


def test_source_auto_prefers_what_is_configured(tmp_path: Path) -> None:
    base = {"IPGEO_DATA_DIR": str(tmp_path)}
    keyless = build_config(Settings.from_env(base), source="auto")
    assert keyless.dbip_url == "https://download.db-ip.com/free/"
    assert not keyless.uses_maxmind and not keyless.urls
    account = {"IPGEO_MAXMIND_ACCOUNT_ID": "42", "IPGEO_MAXMIND_LICENSE_KEY": "secret"}
    maxmind = build_config(Settings.from_env(base | account), source="auto")
    assert maxmind.uses_maxmind and maxmind.dbip_url is None
    # Asked for by name, DB-IP Lite is fetched alone.
    dbip = build_config(Settings.from_env(base | account), source="dbip-lite")
    assert dbip.dbip_url is not None and not dbip.uses_maxmind
    with pytest.raises(ConfigError, match="--source dbip-lite"):
        build_config(Settings.from_env(base))
