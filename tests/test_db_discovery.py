"""Which database is served without IPGEO_CITY_DB / IPGEO_ASN_DB, and whose credit it needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipgeo.cli.common import stale_data_warning
from ipgeo.geo import GeoService, attribution_text, attributions
from ipgeo.geo.attribution import DBIP, IPINFO, MAXMIND, attribution_of
from ipgeo.geo.database import bundled_city_db
from ipgeo.settings import Settings
from tests.mmdbgen import write_mmdb
from tests.updateserver import write_versioned_mmdb

PROBE = "81.2.69.142"
ASN_RECORD = {"autonomous_system_number": 64500, "autonomous_system_organization": "Example"}


def _asn(path: Path) -> Path:
    return write_mmdb(path, {"81.2.69.0/24": ASN_RECORD}, "DBIP-ASN-Lite (compat=GeoLite2-ASN)")


def test_an_empty_directory_serves_the_bundled_database(tmp_path: Path) -> None:
    service = GeoService(db_dir=tmp_path / "missing")
    assert (service.city_path, service.asn_path) == (bundled_city_db(), None)
    assert service.databases[0].database_type == "GeoLite2-City"


def test_the_newest_build_of_each_kind_is_served(tmp_path: Path) -> None:
    newer = write_versioned_mmdb(
        tmp_path / "a-newer.mmdb", "Newer", 1_700_000_000, "DBIP-City-Lite"
    )
    older = write_versioned_mmdb(tmp_path / "z-older.mmdb", "Older", 1_600_000_000)
    os.utime(older)  # a later mtime does not beat a later build
    _asn(tmp_path / "asn.mmdb")
    # Never served: the updater's scratch files, the kept previous version, unreadable files.
    write_versioned_mmdb(tmp_path / ".dbip.mmdb.new.mmdb", "Scratch", 1_800_000_000)
    write_versioned_mmdb(tmp_path / "city.mmdb.prev", "Previous", 1_800_000_000)
    (tmp_path / "broken.mmdb").write_bytes(b"not a database")
    service = GeoService(db_dir=tmp_path)
    assert (service.city_path, service.asn_path) == (newer, tmp_path / "asn.mmdb")
    answer = service.lookup(PROBE)
    assert (answer.city, answer.asn, answer.asn_org) == ("Newer", 64500, "Example")


def test_a_configured_path_wins_over_the_directory(tmp_path: Path) -> None:
    pinned = write_versioned_mmdb(tmp_path / "pinned.mmdb", "Pinned", 1_600_000_000)
    write_versioned_mmdb(tmp_path / "newer.mmdb", "Newer", 1_700_000_000)
    service = GeoService(city_db=pinned, db_dir=tmp_path)
    assert service.lookup(PROBE).city == "Pinned"


def test_a_database_installed_later_is_picked_up_at_the_reload_check(tmp_path: Path) -> None:
    service = GeoService(db_dir=tmp_path, reload_interval=3600)
    assert service.city_path == bundled_city_db()
    write_versioned_mmdb(tmp_path / "dbip-city-lite.mmdb", "Installed", 1_700_000_000)
    _asn(tmp_path / "dbip-asn-lite.mmdb")
    assert service.lookup(PROBE).city != "Installed"  # not before the check is due
    service.request_reload()
    answer = service.lookup(PROBE)
    assert (answer.city, answer.asn) == ("Installed", 64500)
    assert service.generation == 2
    assert service.city_path == tmp_path / "dbip-city-lite.mmdb"
    write_versioned_mmdb(tmp_path / "newest.mmdb", "Newest", 1_750_000_000)
    service.request_reload()
    assert service.lookup(PROBE).city == "Newest"


def test_settings_look_in_the_database_directory(tmp_path: Path) -> None:
    (tmp_path / "databases").mkdir()
    write_versioned_mmdb(tmp_path / "databases" / "city.mmdb", "Found", 1_700_000_000)
    settings = Settings.from_env({"IPGEO_DATA_DIR": str(tmp_path)})
    assert settings.database_dir == tmp_path / "databases"
    assert GeoService.from_settings(settings).lookup(PROBE).city == "Found"


@pytest.mark.parametrize(
    ("database_type", "credit"),
    [
        ("GeoLite2-City", MAXMIND),
        ("GeoLite2-ASN", MAXMIND),
        ("DBIP-City-Lite", DBIP),
        ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", DBIP),
        ("ipinfo lite.mmdb", IPINFO),
        ("GeoIP2-City", None),
        ("My-Own-City", None),
    ],
)
def test_the_credit_follows_the_database_type(database_type: str, credit: object) -> None:
    assert attribution_of(database_type) == credit


def test_credits_are_listed_once_each(tmp_path: Path) -> None:
    city = write_versioned_mmdb(tmp_path / "c.mmdb", "C", 1_700_000_000, "DBIP-City-Lite")
    service = GeoService(city_db=city, asn_db=_asn(tmp_path / "a.mmdb"))
    assert attributions(service.databases) == (DBIP,)
    assert attribution_text(service.databases) == DBIP.text
    own = write_versioned_mmdb(tmp_path / "o.mmdb", "O", 1_700_000_000, "My-Own-City")
    assert attribution_text(GeoService(city_db=own).databases) is None


def test_stale_data_warning_names_the_refresh_command(tmp_path: Path) -> None:
    bundled = GeoService()
    warning = stale_data_warning(Settings(), bundled)
    assert warning is not None
    assert "older than IPGEO_DB_MAX_AGE_DAYS=45" in warning
    assert "ipgeo db update --source dbip-lite" in warning
    assert stale_data_warning(Settings(db_max_age_days=0), bundled) is None
    fresh = write_mmdb(tmp_path / "fresh.mmdb", {"81.2.69.0/24": {"city": {}}})
    assert stale_data_warning(Settings(), GeoService(city_db=fresh)) is None
