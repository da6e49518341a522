"""The two configurations: the bundled City database alone, and with MaxMind's ASN test data."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from bench.parity.cases import BATCH_SIZE, Run
from bench.parity.inputs import (
    EDGE_CASES,
    SCOPED,
    SEED,
    access_log,
    asn_addresses,
    bulk_lines,
    cidr_lines,
    random_addresses,
    write_lines,
)
from bench.testdata import find_testdata

BulkRuns = tuple[tuple[str, str, tuple[str, ...]], ...]
_SUMMARY = ("--summary", "--summary-format", "json")
# (name, normaliser, arguments): every output format per line and unique, fields, lang, inputs.
CITY_BULK: BulkRuns = (
    ("ips-csv", "csv", ("ips.txt",)),
    ("ips-ndjson", "json", ("ips.txt", "--format", "ndjson")),
    ("ips-json", "json", ("ips.txt", "--format", "json")),
    ("ips-csv-unique", "csv", ("ips.txt", "--unique")),
    ("ips-ndjson-unique", "json", ("ips.txt", "--format", "ndjson", "--unique")),
    ("ips-json-unique", "json", ("ips.txt", "--format", "json", "--unique")),
    ("ips-csv-fields-de", "csv", ("ips.txt", "--fields", "line,ip,country,region,city,error",
                                  "--lang", "de")),
    ("ips-csv-unique-clock", "csv", ("ips.txt", "--unique", "--fields",
                                     "ip,local_time,country_iso,utc_offset,hits")),
    ("log-csv", "csv", ("access.log",)),
    ("log-ndjson-unique-summary", "json", ("access.log", "-o", "rows.ndjson", "--format",
                                           "ndjson", "--unique", *_SUMMARY)),
    ("head-gz-json-ja", "json", ("head.txt.gz", "--format", "json", "--lang", "ja", "--fields",
                                 "source,line,input,ip,country,city,local_time")),
    ("two-files-unique", "json", ("cidrs.txt", "head.txt.gz", "--format", "ndjson", "--unique")),
    ("cidrs-ndjson", "json", ("cidrs.txt", "--format", "ndjson")),
    ("cidrs-csv-unique", "csv", ("cidrs.txt", "--unique", "-o", "rows.csv", *_SUMMARY)),
    ("cidrs-expand", "csv", ("cidrs.txt", "--expand", "--fields", "line,input,ip,city,local_time")),
    ("cidrs-expand-limit", "csv", ("cidrs.txt", "--expand", "--max-expand", "10")),
    ("bad-field", "csv", ("ips.txt", "--fields", "ip,bogus")),
    ("hits-per-line", "csv", ("ips.txt", "--fields", "hits")),
)  # fmt: skip
_ASN_NAMES = ("ips-csv", "ips-ndjson", "ips-json", "ips-csv-unique", "ips-ndjson-unique",
              "ips-json-unique", "log-ndjson-unique-summary", "cidrs-ndjson")  # fmt: skip
ASN_BULK: BulkRuns = (
    *(item for item in CITY_BULK if item[0] in _ASN_NAMES),
    ("ips-csv-asn", "csv", ("ips.txt", "--fields", "line,ip,asn,asn_org,country_iso")),
)


def existing_testdata() -> Path:
    """MaxMind's test databases (``bench.testdata.find_testdata``); exit when they are missing."""
    found = find_testdata()
    if not (found / "GeoLite2-ASN-Test.mmdb").is_file():
        raise SystemExit(f"MaxMind test databases not found in {found} (set IPGEO_TESTDATA)")
    return found


def base_env(data_dir: Path) -> dict[str, str]:
    """The ``IPGEO_*`` settings of every run: explicit, so that answers are reproducible."""
    return {
        "IPGEO_DATA_DIR": str(data_dir),
        "IPGEO_LANGUAGES": "en",
        "IPGEO_BATCH_LIMIT": str(BATCH_SIZE),
        "IPGEO_CORS_ORIGINS": "*",
        "IPGEO_REVERSE_DNS": "false",
        "IPGEO_DNS_SERVERS": "127.0.0.1:9",  # no query is a name; never the real DNS anyway
        "IPGEO_DNS_TIMEOUT": "0.2",
        "IPGEO_ACCESS_LOG": "false",
        "IPGEO_DB_RELOAD_INTERVAL": "0",
    }


def _write_inputs(
    workdir: Path, rng: random.Random, addresses: list[str], extra: int, cidrs: list[str]
) -> None:
    workdir.mkdir(parents=True)
    lines = bulk_lines(rng, [ip for ip in addresses if ip not in SCOPED], extra)
    write_lines(workdir / "ips.txt", lines)
    write_lines(workdir / "access.log", access_log(rng, lines))
    write_lines(workdir / "cidrs.txt", cidrs)
    write_lines(workdir / "head.txt", lines[:5000])
    head = workdir / "head.txt"
    (workdir / "head.txt.gz").write_bytes(gzip.compress(head.read_bytes(), mtime=0))
    head.unlink()


def city_run(temp: Path) -> Run:
    """The bundled City database: 100,000 random IPv4 and 20,000 IPv6 addresses."""
    rng = random.Random(SEED)
    addresses = [*EDGE_CASES, *random_addresses(rng, 100_000, 20_000)]
    cidrs = cidr_lines(rng, addresses[len(EDGE_CASES) :], 300, 64)
    _write_inputs(temp / "city", rng, addresses, 100_000, cidrs)
    env = base_env(temp / "data")
    return Run("city", env, addresses, 80, 150, CITY_BULK, temp / "city")


def asn_run(temp: Path) -> Run:
    """The City database plus GeoLite2-ASN-Test: 10,000 random addresses and the ASN networks."""
    testdata = existing_testdata()
    rng = random.Random(SEED + 1)
    inside, networks = asn_addresses(rng, testdata / "GeoLite2-ASN-Test.json")
    addresses = [*EDGE_CASES, *random_addresses(rng, 8_000, 2_000), *inside]
    cidrs = networks + cidr_lines(rng, inside, 100, 64)
    _write_inputs(temp / "asn", rng, addresses, 20_000, cidrs)
    env = base_env(temp / "data") | {"IPGEO_ASN_DB": str(testdata / "GeoLite2-ASN-Test.mmdb")}
    return Run("asn", env, addresses, 40, 80, ASN_BULK, temp / "asn")
