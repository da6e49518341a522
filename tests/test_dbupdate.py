"""``ipgeo db update`` against a real local server speaking geoipupdate's protocol."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from ipgeo.dbupdate import (
    AuthenticationFailed,
    ConfigError,
    LockBusy,
    UpdateConfig,
    UpdateError,
    build_config,
    parse_geoip_conf,
    run_update,
)
from ipgeo.dbupdate.config import LOCK_NAME, UrlSource, parse_duration, parse_url_source
from ipgeo.geo.database import MaxMindDatabase
from ipgeo.settings import Settings
from tests.conftest import free_port
from tests.updateserver import Edition, UpdateServer, gzip_bytes, tar_gz

ACCOUNT, KEY = "42", "test_license_key"
CITY, ASN = "GeoIP2-City", "GeoLite2-ASN"


@pytest.fixture()
def server() -> Iterator[UpdateServer]:
    server = UpdateServer().start()
    server.state.accounts[ACCOUNT] = KEY
    yield server
    server.stop()


@pytest.fixture()
def city_bytes(testdata: Path) -> bytes:
    return (testdata / "GeoIP2-City-Test.mmdb").read_bytes()


@pytest.fixture()
def asn_bytes(testdata: Path) -> bytes:
    return (testdata / "GeoLite2-ASN-Test.mmdb").read_bytes()


@pytest.fixture()
def make_config(server: UpdateServer, tmp_path: Path) -> Callable[..., UpdateConfig]:
    def make(**changes: object) -> UpdateConfig:
        values: dict[str, object] = {
            "directory": tmp_path / "db",
            "account_id": int(ACCOUNT),
            "license_key": KEY,
            "editions": (CITY,),
            "host": server.url,
            "retry_for": 0.0,
        }
        values.update(changes)
        return UpdateConfig(**values)  # type: ignore[arg-type]

    return make


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_good_download_is_installed_and_then_up_to_date(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], city_bytes: bytes
) -> None:
    server.state.editions[CITY] = Edition(city_bytes)
    config = make_config()
    [result] = run_update(config)
    target = config.directory / f"{CITY}.mmdb"
    assert result.status == "updated", result
    assert result.database_type == "GeoIP2-City"
    assert target.read_bytes() == city_bytes
    assert not (config.directory / f"{CITY}.mmdb.prev").exists()
    download_paths = [p for p in server.state.requests if "/download" in p]
    assert download_paths == [f"/geoip/databases/{CITY}/download?date=20240102&suffix=tar.gz"]
    # Same MD5 on the server: metadata only, no second download, file untouched.
    inode = target.stat().st_ino
    [again] = run_update(config)
    assert again.status == "unchanged"
    assert len([p for p in server.state.requests if "/download" in p]) == 1
    assert target.stat().st_ino == inode
    # No temporary files are left behind.
    assert sorted(p.name for p in config.directory.iterdir()) == [
        ".geoipupdate.lock",
        f"{CITY}.mmdb",
    ]


def test_new_build_replaces_atomically_and_keeps_previous(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], testdata: Path
) -> None:
    first = (testdata / "GeoIP2-City-Test.mmdb").read_bytes()
    second = (testdata / "GeoLite2-City-Test.mmdb").read_bytes()
    server.state.editions["GeoLite2-City"] = Edition(second, date="2024-02-03")
    config = make_config(editions=("GeoLite2-City",))
    target = config.directory / "GeoLite2-City.mmdb"
    config.directory.mkdir()
    target.write_bytes(first)  # an older file of another build
    reader = MaxMindDatabase(target)  # a running service holds the old file open
    [result] = run_update(config)
    assert result.status == "updated"
    assert target.read_bytes() == second
    assert (config.directory / "GeoLite2-City.mmdb.prev").read_bytes() == first
    assert reader.record("81.2.69.142") is not None  # the old mapping still answers
    reader.close()


@pytest.mark.parametrize(
    "case",
    ["truncated", "md5_mismatch", "broken_tree", "not_gzip", "empty_archive"],
)
def test_corrupt_download_keeps_old_database(
    case: str,
    server: UpdateServer,
    make_config: Callable[..., UpdateConfig],
    city_bytes: bytes,
    testdata: Path,
) -> None:
    config = make_config()
    config.directory.mkdir()
    target = config.directory / f"{CITY}.mmdb"
    old = (testdata / "GeoLite2-City-Test.mmdb").read_bytes()
    target.write_bytes(old)
    edition = Edition(city_bytes)
    if case == "truncated":
        full = tar_gz(CITY, city_bytes)
        edition.payload = full[: len(full) // 2]
    elif case == "md5_mismatch":
        edition.md5 = "0" * 32
    elif case == "broken_tree":
        broken = (testdata / "MaxMind-DB-test-broken-search-tree-24.mmdb").read_bytes()
        edition = Edition(broken)
    elif case == "not_gzip":
        edition.payload = b"<html>maintenance</html>"
    elif case == "empty_archive":
        edition.payload = gzip_bytes(b"\0" * 1024)
    server.state.editions[CITY] = edition
    [result] = run_update(config)
    assert result.status == "failed"
    assert result.error_kind == "corrupt", result.error
    assert target.read_bytes() == old
    assert not (config.directory / f"{CITY}.mmdb.prev").exists()
    leftovers = [p.name for p in config.directory.iterdir() if p.name.startswith(f".{CITY}")]
    assert leftovers == []


def test_wrong_database_type_is_rejected(
    server: UpdateServer,
    make_config: Callable[..., UpdateConfig],
    asn_bytes: bytes,
    city_bytes: bytes,
) -> None:
    server.state.editions[CITY] = Edition(asn_bytes)  # an ASN file for a City edition
    config = make_config()
    config.directory.mkdir()
    target = config.directory / f"{CITY}.mmdb"
    target.write_bytes(city_bytes)
    [result] = run_update(config)
    assert result.status == "failed"
    assert result.error_kind == "wrong_type"
    assert "GeoLite2-ASN database, not GeoIP2-City" in (result.error or "")
    assert target.read_bytes() == city_bytes


def test_bad_credentials_give_a_clear_error(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], city_bytes: bytes
) -> None:
    server.state.editions[CITY] = Edition(city_bytes)
    [result] = run_update(make_config(license_key="wrong"))
    assert result.status == "failed"
    assert result.error_kind == "auth"
    assert "HTTP 401" in (result.error or "")
    assert "Invalid account ID or license key" in (result.error or "")
    assert not any("/download" in p for p in server.state.requests)
    assert AuthenticationFailed.kind == "auth"


def test_network_failure_is_reported(
    make_config: Callable[..., UpdateConfig], tmp_path: Path
) -> None:
    config = make_config(host=f"http://127.0.0.1:{free_port()}")
    [result] = run_update(config)
    assert result.status == "failed"
    assert result.error_kind == "network"
    assert "cannot reach http://127.0.0.1:" in (result.error or "")


def test_unknown_edition_fails_but_others_still_update(
    server: UpdateServer,
    make_config: Callable[..., UpdateConfig],
    city_bytes: bytes,
    asn_bytes: bytes,
) -> None:
    server.state.editions[CITY] = Edition(city_bytes)
    server.state.editions[ASN] = Edition(asn_bytes)
    results = run_update(make_config(editions=("GeoIP2-Nope", CITY, ASN)))
    assert [r.status for r in results] == ["failed", "updated", "updated"]
    assert "HTTP 404" in (results[0].error or "")


def test_lock_file_prevents_two_updaters(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], city_bytes: bytes
) -> None:
    server.state.editions[CITY] = Edition(city_bytes)
    config = make_config()
    config.directory.mkdir()
    with (config.directory / ".geoipupdate.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(LockBusy, match="another update is running"):
            run_update(config)
    assert server.state.requests == []
    [result] = run_update(config)
    assert result.status == "updated"


@pytest.mark.parametrize("suffix", [".mmdb", ".mmdb.gz", ".tar.gz"])
def test_plain_urls(
    suffix: str, server: UpdateServer, make_config: Callable[..., UpdateConfig], city_bytes: bytes
) -> None:
    body = {
        ".mmdb": city_bytes,
        ".mmdb.gz": gzip_bytes(city_bytes),
        ".tar.gz": tar_gz("dbip-city-lite", city_bytes),
    }[suffix]
    server.state.files[f"/free/dbip-city-lite-2024-01{suffix}"] = body
    source = parse_url_source(
        f"dbip-city-lite.mmdb={server.url}/free/dbip-city-lite-2024-01{suffix}"
    )
    config = make_config(account_id=None, license_key="", editions=(), urls=(source,))
    [result] = run_update(config)
    assert result.status == "updated", result.error
    assert (config.directory / "dbip-city-lite.mmdb").read_bytes() == city_bytes
    [again] = run_update(config)
    assert again.status == "unchanged"


def test_url_checksum_and_kind_are_checked(
    server: UpdateServer,
    make_config: Callable[..., UpdateConfig],
    city_bytes: bytes,
    asn_bytes: bytes,
) -> None:
    server.state.files["/city.mmdb"] = city_bytes
    server.state.files["/asn-as-city.mmdb"] = asn_bytes
    good = hashlib.sha256(city_bytes).hexdigest()
    sources = (
        parse_url_source(f"{server.url}/city.mmdb#sha256={'0' * 64}"),
        parse_url_source(f"other.mmdb={server.url}/asn-as-city.mmdb"),
        parse_url_source(f"{server.url}/city.mmdb#sha256={good}"),
        parse_url_source(f"{server.url}/missing.mmdb.gz"),
    )
    config = make_config(account_id=None, license_key="", editions=(), urls=sources)
    results = run_update(config)
    assert [(r.status, r.error_kind) for r in results] == [
        ("failed", "corrupt"),
        ("failed", "wrong_type"),
        ("updated", None),
        ("failed", "network"),
    ]
    assert not (config.directory / "other.mmdb").exists()


def test_geoip_conf_and_settings(tmp_path: Path, server: UpdateServer) -> None:
    conf = tmp_path / "GeoIP.conf"
    conf.write_text(
        "# GeoIP.conf as geoipupdate reads it\n"
        f"AccountID {ACCOUNT}\n"
        f"LicenseKey {KEY}\n"
        "EditionIDs GeoLite2-Country GeoLite2-City\n"
        f"DatabaseDirectory {tmp_path / 'dbdir'}\n"
        f"Host {server.url}\n"
        "RetryFor 1m30s\n"
        "PreserveFileTimes 1\n"
        "Protocol https\n"
    )
    assert parse_geoip_conf(conf)["EditionIDs"] == "GeoLite2-Country GeoLite2-City"
    config = build_config(Settings.from_env({}), conf_file=conf)
    assert config.account_id == 42
    assert config.editions == ("GeoLite2-Country", "GeoLite2-City")
    assert config.directory == tmp_path / "dbdir"
    assert config.host == server.url
    assert config.retry_for == 90
    assert config.preserve_file_times
    assert KEY not in repr(config)
    # IPGEO_* settings override the file; options override both.
    env = Settings.from_env(
        {
            "IPGEO_MAXMIND_EDITIONS": "GeoLite2-ASN",
            "IPGEO_MAXMIND_HOST": "updates.example.org",
            "IPGEO_MAXMIND_LICENSE_KEY": "other",
        }
    )
    config = build_config(env, conf_file=conf, directory=tmp_path / "x", retry_for=0)
    assert config.editions == ("GeoLite2-ASN",)
    assert config.host == "https://updates.example.org"
    assert config.license_key == "other"
    assert config.directory == tmp_path / "x"
    # Credentials from the environment alone default to GeoLite2 City and ASN.
    only_env = Settings.from_env(
        {"IPGEO_MAXMIND_ACCOUNT_ID": "7", "IPGEO_MAXMIND_LICENSE_KEY": "k"}
    )
    assert build_config(only_env).editions == ("GeoLite2-City", "GeoLite2-ASN")
    assert build_config(only_env).host == "https://updates.maxmind.com"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("AccountID 1\nLicenseKey k\nFooBar 1\n", "unknown option 'FooBar'"),
        ("AccountID x\nLicenseKey k\n", "not a number"),
        ("AccountID 1\nAccountID 2\n", "set more than once"),
        ("AccountID 999999\nLicenseKey 000000000000\n", "placeholder"),
        ("AccountID 1\n", "no license key"),
        ("EditionIDs GeoLite2-City\n", "nothing to update"),
        ("AccountID 1\nLicenseKey k\nRetryFor soon\n", "not a duration"),
    ],
)
def test_bad_geoip_conf(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "GeoIP.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(Settings.from_env({}), conf_file=conf)


def test_url_specs() -> None:
    source = parse_url_source("https://ipinfo.io/data/ipinfo_lite.mmdb?token=abc")
    assert source.filename == "ipinfo_lite.mmdb"
    assert source.url == "https://ipinfo.io/data/ipinfo_lite.mmdb?token=abc"
    assert parse_url_source("https://x.test/a/dbip-asn.mmdb.gz").filename == "dbip-asn.mmdb"
    named = parse_url_source("city=https://x.test/y.tar.gz#md5=" + "a" * 32)
    assert (named.filename, named.checksum) == ("city.mmdb", ("md5", "a" * 32))
    for bad in ("ftp://x.test/a.mmdb", "https://x.test/a.mmdb#sha1=00", "/etc/passwd"):
        with pytest.raises(ConfigError):
            parse_url_source(bad)
    assert parse_duration("5m") == 300
    assert parse_duration("2h") == 7200


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipgeo", "db", "update", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_cli_end_to_end(server: UpdateServer, tmp_path: Path, city_bytes: bytes) -> None:
    server.state.editions[CITY] = Edition(city_bytes)
    conf = tmp_path / "GeoIP.conf"
    conf.write_text(
        f"AccountID {ACCOUNT}\nLicenseKey {KEY}\nEditionIDs {CITY}\nHost {server.url}\n"
    )
    directory = tmp_path / "dbs"
    done = _cli("--config", str(conf), "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    assert f"{CITY}: updated to GeoIP2-City built" in done.stdout
    assert _md5(directory / f"{CITY}.mmdb") == hashlib.md5(city_bytes).hexdigest()
    again = _cli("--config", str(conf), "--dir", str(directory), "--json")
    assert again.returncode == 0
    assert '"status":"unchanged"' in again.stdout
    denied = _cli(
        "--config", str(conf), "--dir", str(directory), env={"IPGEO_MAXMIND_LICENSE_KEY": "bad"}
    )
    assert denied.returncode == 1
    assert "FAILED" in denied.stderr and "HTTP 401" in denied.stderr
    assert "Traceback" not in denied.stderr
    assert (directory / f"{CITY}.mmdb").read_bytes() == city_bytes
    nothing = _cli()
    assert nothing.returncode == 1
    assert "nothing to update" in nothing.stderr


def test_cli_every_runs_periodically_and_stops_on_sigterm(
    server: UpdateServer, tmp_path: Path, city_bytes: bytes
) -> None:
    server.state.files["/city.mmdb"] = city_bytes
    directory = tmp_path / "dbs"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "ipgeo", "db", "update",
            "--every", "1h", "--dir", str(directory), "--url", f"{server.url}/city.mmdb",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (directory / "city.mmdb").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert process.poll() is None  # still running, waiting for the next round
        process.terminate()
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "city.mmdb: updated to GeoIP2-City" in out
    assert "next update in 1h" in err
    assert _cli("--every", "5s", "--url", f"{server.url}/city.mmdb").returncode == 2


SMALL = 16 * 1024  # the City test database has 22,569 bytes, 11,176 gzipped


@pytest.mark.parametrize(
    "case", ["announced", "chunked", "until-close", "overstated", "mmdb.gz", "tar.gz"]
)
def test_oversized_download_is_refused(
    case: str,
    server: UpdateServer,
    make_config: Callable[..., UpdateConfig],
    city_bytes: bytes,
    testdata: Path,
) -> None:
    """Past the bound: failed, old file untouched, nothing partial left, whatever the server
    says about the length, and for what a small .gz or .tar.gz unpacks to."""
    if case == "tar.gz":
        server.state.editions[CITY] = Edition(city_bytes)
        config = make_config(max_download=SMALL)
        target = config.directory / f"{CITY}.mmdb"
    else:
        path = "/city.mmdb.gz" if case == "mmdb.gz" else "/city.mmdb"
        server.state.files[path] = gzip_bytes(city_bytes) if case == "mmdb.gz" else city_bytes
        framing = {
            "chunked": "chunked",
            "until-close": "until-close",
            "overstated": "claims:" + "9" * 12,
        }
        if case in framing:
            server.state.framing[path] = framing[case]
        source = UrlSource(f"{server.url}{path}", "city.mmdb")
        config = make_config(max_download=SMALL, editions=(), urls=(source,))
        target = config.directory / "city.mmdb"
    config.directory.mkdir()
    old = (testdata / "GeoLite2-City-Test.mmdb").read_bytes()
    target.write_bytes(old)
    [result] = run_update(config)
    assert (result.status, result.error_kind) == ("failed", "too_large"), result
    assert "more than IPGEO_DB_MAX_DOWNLOAD (16 KiB)" in (result.error or "") or (
        "exceeds IPGEO_DB_MAX_DOWNLOAD (16 KiB)" in (result.error or "")
    )
    assert target.read_bytes() == old
    assert sorted(p.name for p in config.directory.iterdir()) == [LOCK_NAME, target.name]


def test_a_download_of_exactly_the_bound_is_installed(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], city_bytes: bytes
) -> None:
    server.state.files["/city.mmdb.gz"] = gzip_bytes(city_bytes)
    server.state.framing["/city.mmdb.gz"] = "chunked"
    source = UrlSource(f"{server.url}/city.mmdb.gz", "city.mmdb")
    config = make_config(max_download=len(city_bytes), editions=(), urls=(source,))
    [result] = run_update(config)
    assert result.status == "updated", result
    assert (config.directory / "city.mmdb").read_bytes() == city_bytes


def test_cli_refuses_a_download_beyond_the_bound(
    server: UpdateServer, tmp_path: Path, city_bytes: bytes, testdata: Path
) -> None:
    server.state.files["/city.mmdb"] = city_bytes
    server.state.framing["/city.mmdb"] = "until-close"
    directory = tmp_path / "dbs"
    directory.mkdir()
    old = (testdata / "GeoLite2-City-Test.mmdb").read_bytes()
    (directory / "city.mmdb").write_bytes(old)
    url = f"{server.url}/city.mmdb"
    done = _cli("--dir", str(directory), "--url", url, env={"IPGEO_DB_MAX_DOWNLOAD": "16K"})
    assert done.returncode == 1, done.stdout
    assert (
        "city.mmdb: FAILED: download of city.mmdb: the download exceeds "
        "IPGEO_DB_MAX_DOWNLOAD (16 KiB)"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert (directory / "city.mmdb").read_bytes() == old
    assert sorted(p.name for p in directory.iterdir()) == [LOCK_NAME, "city.mmdb"]


def test_unwritable_directory_is_a_clear_error(
    server: UpdateServer, make_config: Callable[..., UpdateConfig], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UpdateError, match="cannot create"):
        run_update(make_config(directory=blocker / "db"))
    done = _cli("--dir", str(blocker / "db"), "--url", f"{server.url}/x.mmdb")
    assert done.returncode == 1
    assert "cannot create" in done.stderr and "Traceback" not in done.stderr


def test_cli_warns_when_the_service_reads_another_file(
    server: UpdateServer, tmp_path: Path, city_bytes: bytes
) -> None:
    server.state.files["/city.mmdb"] = city_bytes
    directory = tmp_path / "dbs"
    url = f"{server.url}/city.mmdb"
    elsewhere = _cli("--dir", str(directory), "--url", url, env={"IPGEO_CITY_DB": "/srv/x.mmdb"})
    assert elsewhere.returncode == 0
    assert "note: IPGEO_CITY_DB=/srv/x.mmdb is not among the files this updates" in elsewhere.stderr
    same = _cli("--url", url, env={"IPGEO_CITY_DB": str(directory / "city.mmdb")})
    assert same.returncode == 0
    assert "note:" not in same.stderr
    assert "city.mmdb: up to date" in same.stdout  # default directory: next to IPGEO_CITY_DB


def test_cli_with_settings_only(server: UpdateServer, tmp_path: Path, asn_bytes: bytes) -> None:
    server.state.editions[ASN] = Edition(asn_bytes)
    env = {
        "IPGEO_MAXMIND_ACCOUNT_ID": ACCOUNT,
        "IPGEO_MAXMIND_LICENSE_KEY": KEY,
        "IPGEO_MAXMIND_EDITIONS": ASN,
        "IPGEO_MAXMIND_HOST": server.url,
        "IPGEO_DB_DIR": str(tmp_path / "fromenv"),
    }
    done = _cli("--json", env=env)
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["status"] == "updated"
    assert result["database_type"] == "GeoLite2-ASN"
    assert (tmp_path / "fromenv" / f"{ASN}.mmdb").read_bytes() == asn_bytes
