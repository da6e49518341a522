"""Acceptance: ``ipgeo up --tls-cert … --tls-key …`` serves HTTPS with HTTP/2, and MaxMind's
official ``geoip2`` clients, unmodified, get from ipgeo what ``geoip2.database.Reader`` reads
from the same file."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import geoip2.webservice
import maxminddb
import pytest
import requests
import trustme

from ipgeo.geo.database import bundled_city_db
from ipgeo.up.nginx import NginxSite, TlsFiles, find_nginx
from tests.conftest import TESTDATA, free_port
from tests.upctl import UpProcess, nginx_accepts

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed")

COUNTRY_PARTS = ("continent", "country", "registered_country", "represented_country", "traits")
ASN_TRAITS = ("autonomous_system_number", "autonomous_system_organization")
CITY_TEST_DB = TESTDATA / "GeoIP2-City-Test.mmdb"
ASN_TEST_DB = TESTDATA / "GeoLite2-ASN-Test.mmdb"
ACCOUNT = (42, "the-right-key")

# The async client (aiohttp) makes its default SSL context when imported, from the usual
# OpenSSL variables: SSL_CERT_FILE must be set before that, so it runs in its own interpreter.
ASYNC_CLIENT = """
import asyncio, json, sys
import geoip2.errors, geoip2.webservice

async def main(host, queries):
    async with geoip2.webservice.AsyncClient(42, "the-right-key", host=host) as client:
        out = []
        for kind, ip in queries:
            try:
                model = await getattr(client, kind)(ip)
                out.append(model.to_dict())
            except geoip2.errors.GeoIP2Error as exc:
                out.append(type(exc).__name__)
        return out

host, queries = json.load(sys.stdin)
print(json.dumps(asyncio.run(main(host, queries))))
"""


class TlsUp:
    """``ipgeo up`` serving HTTPS with a certificate of a test CA."""

    def __init__(self, proc: UpProcess, ca_file: Path) -> None:
        self.proc = proc
        self.ca_file = ca_file
        self.host = f"localhost:{proc.port}"
        self.url = f"https://{self.host}"

    def client(self, key: str = ACCOUNT[1]) -> geoip2.webservice.Client:
        """The official sync client, trusting the CA through ``REQUESTS_CA_BUNDLE``."""
        return geoip2.webservice.Client(ACCOUNT[0], key, host=self.host, timeout=10)

    def async_answers(self, queries: list[tuple[str, str]]) -> list[Any]:
        """The official async client's answers (``to_dict()`` or the error's class name)."""
        env = dict(os.environ, SSL_CERT_FILE=str(self.ca_file))
        done = subprocess.run(
            [sys.executable, "-c", ASYNC_CLIENT],
            input=json.dumps([self.host, queries]),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(ca, certificate chain, key)`` for localhost, made by trustme."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1", "::1")
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    for number, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(paths[1]), append=number > 0)
    issued.private_key_pem.write_to_path(str(paths[2]))
    return paths


def _wait_ready(proc: UpProcess, timeout: float = 90) -> None:
    """Wait until ``/healthz`` answers over HTTPS (a busy machine may be slow to answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"ipgeo up exited {proc.proc.returncode}:\n{proc.output()}")
        try:
            if requests.get(proc.url + "/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"ipgeo up not ready after {timeout} s:\n{proc.output()}")


def _tls_up(
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: tuple[Path, Path, Path],
    *args: str,
    **env: str,
) -> Iterator[TlsUp]:
    ca, cert, key = tls_files
    proc = UpProcess(
        tmp_path_factory.mktemp("up"),
        free_port(),
        *args,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--job-workers",
        "0",
        **env,
    )
    proc.url = f"https://localhost:{proc.port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # requests' (so the sync client's) own way
        try:
            _wait_ready(proc)
            yield TlsUp(proc, ca)
        finally:
            proc.kill_all()


@pytest.fixture(scope="module")
def test_db_up(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path, Path]
) -> Iterator[TlsUp]:
    """MaxMind's test City and ASN databases, any credentials accepted."""
    yield from _tls_up(
        tmp_path_factory,
        tls_files,
        IPGEO_CITY_DB=str(CITY_TEST_DB),
        IPGEO_ASN_DB=str(ASN_TEST_DB),
    )


@pytest.fixture(scope="module")
def bundled_up(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path, Path]
) -> Iterator[TlsUp]:
    """The bundled database, one account, nginx believing 127.0.0.1's X-Forwarded-For."""
    yield from _tls_up(
        tmp_path_factory,
        tls_files,
        IPGEO_WEBSERVICE_ACCOUNTS=f"{ACCOUNT[0]}:{ACCOUNT[1]};7:another-key",
        IPGEO_TRUSTED_PROXIES="127.0.0.1",
    )


def _expected(reader: geoip2.database.Reader, kind: str, ip: str) -> dict[str, Any] | str:
    """What the web service should answer, from the Reader (or the error's class name).

    The Reader's ``country()`` refuses a City file; a country answer is the City model's
    country parts.
    """
    try:
        found = reader.city(ip).to_dict()
    except geoip2.errors.AddressNotFoundError:
        return "AddressNotFoundError"
    if kind == "country":
        return {key: value for key, value in found.items() if key in COUNTRY_PARTS}
    return found


def _compare(answer: dict[str, Any] | str, expected: dict[str, Any] | str, asn: Any) -> None:
    """The answer equals the Reader's model field by field; ASN traits equal the ASN file's."""
    if isinstance(expected, str) or isinstance(answer, str):
        assert answer == expected
        return
    answer = dict(answer)
    assert answer.pop("maxmind") == {"queries_remaining": 999_999_999}
    traits = dict(answer.get("traits", {}))
    got_asn = {key: traits.pop(key) for key in ASN_TRAITS if key in traits}
    answer["traits"] = traits
    assert answer == expected
    assert got_asn == asn


def _asn_of(reader: maxminddb.Reader | None, ip: str) -> dict[str, Any]:
    record = reader.get(ip) if reader is not None else None
    if not isinstance(record, dict):
        return {}
    return {key: record[key] for key in ASN_TRAITS if key in record}


def _sync_answer(client: geoip2.webservice.Client, kind: str, ip: str) -> dict[str, Any] | str:
    try:
        model = client.city(ip) if kind == "city" else client.country(ip)
    except geoip2.errors.AddressNotFoundError:
        return "AddressNotFoundError"
    return model.to_dict()  # type: ignore[no-any-return]


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def _random_v4(rng: random.Random, count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if _public(ip):
            found.append(str(ip))
    return found


def _random_v6(rng: random.Random, count: int) -> list[str]:
    """Addresses in the regional registries' big IPv6 blocks (most of them are allocated)."""
    blocks = [ipaddress.IPv6Network(net) for net in ("2400::/12", "2600::/12", "2a00::/12")]
    found: list[str] = []
    while len(found) < count:
        block = rng.choice(blocks)
        ip = block[rng.getrandbits(128 - block.prefixlen)]
        if _public(ip):
            found.append(str(ip))
    return found


def _in_networks(path: Path, rng: random.Random, version: int, count: int) -> list[str]:
    """Random public addresses inside networks of ``path``, of one IP version."""
    with maxminddb.open_database(str(path)) as reader:
        networks = [net for net, _ in reader if net.version == version]
    found: list[str] = []
    for network in rng.sample(networks, min(count, len(networks))):
        ip = network[rng.getrandbits(network.max_prefixlen - network.prefixlen)]
        if _public(ip):
            found.append(str(ip))
    return found


def _check_both_clients(up: TlsUp, city_db: Path, asn_db: Path | None, ips: list[str]) -> None:
    queries = [(kind, ip) for ip in ips for kind in ("city", "country")]
    with (
        geoip2.database.Reader(str(city_db)) as reader,
        maxminddb.open_database(str(asn_db)) if asn_db else _no_reader() as asn_reader,
    ):
        expected = [_expected(reader, kind, ip) for kind, ip in queries]
        asns = [_asn_of(asn_reader, ip) if kind == "city" else {} for kind, ip in queries]
    with up.client() as client:
        sync_answers = [_sync_answer(client, kind, ip) for kind, ip in queries]
    async_answers = up.async_answers(queries)
    for (kind, ip), answer, again, want, asn in zip(
        queries, sync_answers, async_answers, expected, asns, strict=True
    ):
        try:
            _compare(answer, want, asn)
            _compare(again, want, asn)
        except AssertionError:
            print(f"{kind} {ip}")
            raise
    assert sum(not isinstance(want, str) for want in expected) > len(queries) // 4


class _no_reader:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_test_databases_through_both_clients(test_db_up: TlsUp) -> None:
    rng = random.Random(17)
    ips = (
        _in_networks(CITY_TEST_DB, rng, 4, 300)
        + _in_networks(CITY_TEST_DB, rng, 6, 100)
        + _in_networks(ASN_TEST_DB, rng, 4, 50)
        + _random_v4(rng, 50)
        + _random_v6(rng, 20)
    )
    _check_both_clients(test_db_up, CITY_TEST_DB, ASN_TEST_DB, ips)


def test_bundled_database_through_both_clients(bundled_up: TlsUp) -> None:
    rng = random.Random(2026)
    ips = _random_v4(rng, 1000) + _random_v6(rng, 200)
    _check_both_clients(bundled_up, bundled_city_db(), None, ips)


def test_reserved_and_unknown_addresses(test_db_up: TlsUp) -> None:
    with test_db_up.client() as client:
        for ip in ("10.1.2.3", "192.168.0.1", "127.0.0.1", "fe80::1", "2001:db8::1", "1.1.1.1"):
            with pytest.raises(geoip2.errors.AddressNotFoundError):
                client.city(ip)
            with pytest.raises(geoip2.errors.AddressNotFoundError):
                client.country(ip)
    codes = {
        ip: requests.get(f"{test_db_up.url}/geoip/v2.1/city/{ip}", timeout=10)
        for ip in ("10.1.2.3", "1.1.1.1", "not-an-ip", "1.2.3.4.5")
    }
    assert codes["10.1.2.3"].status_code == 404
    assert codes["10.1.2.3"].json()["code"] == "IP_ADDRESS_RESERVED"
    assert codes["1.1.1.1"].json() == {
        "code": "IP_ADDRESS_NOT_FOUND",
        "error": "The address 1.1.1.1 is not in our database.",
    }
    for bad in ("not-an-ip", "1.2.3.4.5"):
        assert codes[bad].status_code == 400
        assert codes[bad].json()["code"] == "IP_ADDRESS_INVALID"
        assert codes[bad].headers["Content-Type"].startswith("application/vnd.maxmind.com-error")


def test_insights_answers_what_city_does(test_db_up: TlsUp) -> None:
    with test_db_up.client() as client:
        insights, city = client.insights("89.160.20.112"), client.city("89.160.20.112")
    assert insights.to_dict() == city.to_dict()
    assert city.traits.autonomous_system_number == 29518
    response = requests.get(f"{test_db_up.url}/geoip/v2.1/insights/89.160.20.112", timeout=10)
    assert response.headers["Content-Type"] == (
        "application/vnd.maxmind.com-insights+json; charset=UTF-8; version=1.0"
    )


def test_no_argument_answers_for_the_caller(test_db_up: TlsUp, bundled_up: TlsUp) -> None:
    # The test's own address is loopback, which has no location: the error names it.
    with test_db_up.client() as client, pytest.raises(geoip2.errors.AddressNotFoundError) as err:
        client.city()
    assert "127.0.0.1" in str(err.value)
    # Behind a trusted proxy, "me" is the forwarded client.
    me = requests.get(
        f"{bundled_up.url}/geoip/v2.1/city/me",
        headers={"X-Forwarded-For": "8.8.8.8"},
        auth=(str(ACCOUNT[0]), ACCOUNT[1]),
        timeout=10,
    )
    assert me.status_code == 200, me.text
    assert me.json()["traits"]["ip_address"] == "8.8.8.8"
    assert me.json()["country"]["iso_code"] == "US"


def test_credentials_are_checked_when_accounts_are_set(bundled_up: TlsUp) -> None:
    assert bundled_up.client().city("8.8.8.8").country.iso_code == "US"
    with pytest.raises(geoip2.errors.AuthenticationError):
        bundled_up.client("a-wrong-key").city("8.8.8.8")
    with pytest.raises(geoip2.errors.AuthenticationError):
        geoip2.webservice.Client(7, ACCOUNT[1], host=bundled_up.host).country("8.8.8.8")
    bare = requests.get(f"{bundled_up.url}/geoip/v2.1/country/8.8.8.8", timeout=10)
    assert bare.status_code == 401
    assert bare.json()["code"] == "ACCOUNT_ID_REQUIRED"
    wrong = requests.get(
        f"{bundled_up.url}/geoip/v2.1/country/8.8.8.8", auth=("42", "nope"), timeout=10
    )
    assert (wrong.status_code, wrong.json()["code"]) == (401, "AUTHORIZATION_INVALID")


def test_https_offers_http2_with_tls_1_2_and_1_3(
    test_db_up: TlsUp, tls_files: tuple[Path, Path, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", test_db_up.proc.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() == "TLSv1.3"
    tls12 = ssl.create_default_context(cafile=str(tls_files[0]))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", test_db_up.proc.port), timeout=10) as raw,
        tls12.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        assert "ECDHE" in tls.cipher()[0]


def test_the_app_knows_the_scheme(test_db_up: TlsUp) -> None:
    document = requests.get(f"{test_db_up.url}/api/openapi.json", timeout=10).json()
    assert document["servers"][0]["url"].startswith("https://localhost")
    home = requests.get(f"{test_db_up.url}/", headers={"Accept": "text/html"}, timeout=10)
    assert home.headers["Server"] == "nginx"
    assert "Strict-Transport-Security" not in home.headers  # only with --hsts


def test_plain_http_is_not_served_on_the_tls_port(test_db_up: TlsUp) -> None:
    response = requests.get(f"http://127.0.0.1:{test_db_up.proc.port}/healthz", timeout=10)
    assert response.status_code == 400  # nginx: "plain HTTP request was sent to HTTPS port"


def test_metrics_count_the_web_service(test_db_up: TlsUp) -> None:
    requests.get(f"{test_db_up.url}/geoip/v2.1/country/81.2.69.160", timeout=10)
    metrics = requests.get(f"{test_db_up.url}/metrics", timeout=10).text
    assert 'endpoint="/geoip/v2.1/country/<address>"' in metrics


def test_rendered_tls_config_with_server_names_and_hsts_passes_nginx_t(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    site = NginxSite(
        run_dir=tmp_path / "nginx",
        listens=("127.0.0.1:8443", "[::1]:8443"),
        upstream_servers=("127.0.0.1:3031",),
        server_names=("geo.example.com",),
        tls=TlsFiles(tls_files[1], tls_files[2], hsts=True),
    )
    conf = site.render()
    text = nginx_accepts(conf)
    assert text.count("listen 127.0.0.1:8443 ssl http2") == 2  # the 444 server too
    assert "ssl_reject_handshake on;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "ssl_session_tickets off;" in text
    assert 'Strict-Transport-Security "max-age=63072000" always' in text


def test_tls_needs_both_files(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPGEO_")}
    env["IPGEO_DATA_DIR"] = str(tmp_path)
    ipgeo = Path(sys.executable).parent / "ipgeo"
    only_cert = subprocess.run(
        [str(ipgeo), "up", "--tls-cert", str(tls_files[1])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert only_cert.returncode == 2
    assert "--tls-cert and --tls-key go together" in only_cert.stderr
    missing = NginxSite(
        run_dir=tmp_path / "nginx",
        listens=("8443",),
        upstream_servers=("127.0.0.1:3031",),
        tls=TlsFiles(tmp_path / "none.pem", tls_files[2]),
    )
    with pytest.raises(ValueError, match=r"none\.pem is missing"):
        missing.render()


def test_gunicorn_behind_tls_knows_the_scheme(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path, Path]
) -> None:
    with contextlib.contextmanager(_tls_up)(
        tmp_path_factory, tls_files, "--server", "gunicorn"
    ) as up:
        assert "gunicorn" in up.proc.children()
        # gunicorn learns the scheme from nginx's X-Forwarded-Proto (uWSGI from HTTPS)
        document = requests.get(f"{up.url}/api/openapi.json", timeout=10).json()
        assert document["servers"][0]["url"].startswith("https://localhost")
        with up.client() as client:
            assert client.country("81.2.69.142").country.iso_code == "GB"


def test_healthcheck_command_follows_tls(
    test_db_up: TlsUp, tls_files: tuple[Path, Path, Path]
) -> None:
    ipgeo = Path(sys.executable).parent / "ipgeo"
    url = f"http://127.0.0.1:{test_db_up.proc.port}/healthz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPGEO_")}
    plain = subprocess.run([str(ipgeo), "healthcheck", "--url", url], env=env, check=False)
    assert plain.returncode == 1  # nginx's 400 for plain HTTP on the HTTPS port
    env["IPGEO_TLS_CERT"] = str(tls_files[1])  # as in the nginx container
    tls = subprocess.run([str(ipgeo), "healthcheck", "--url", url], env=env, check=False)
    assert tls.returncode == 0
