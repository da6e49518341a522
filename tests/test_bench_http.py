"""The HTTP benchmark harness's own parts (bench/http): wrk parsing, addresses, configs.

The benchmark itself is never run here (it is timed); see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import maxminddb
import psutil
import pytest

from bench.http.addresses import database_gaps, excluded_ranges, is_excluded, merge
from bench.http.configs import Options, all_configs
from bench.http.deploy import deploy_dir, render_nginx, render_templates
from bench.http.echoip import build_echoip, echoip_binary
from bench.http.ipgeo_up import QUERY_SUFFIX
from bench.http.measure import (
    lua_scripts,
    measure_config,
    not_measured,
    prepare_configs,
    server_environment,
)
from bench.http.processes import ConfigUnavailable, Stack
from bench.http.report import Measurement, add_ratios, cpu_table, markdown_table, median_rounds
from bench.http.wrk import WrkError, parse_wrk_output, run_wrk, write_lua_script
from ipgeo.geo.database import bundled_city_db
from ipgeo.up.nginx import find_nginx
from tests.mmdbgen import city_record, write_mmdb

WRK_SAMPLES = Path(__file__).parent / "data" / "wrk"


def test_parse_clean_run() -> None:
    result = parse_wrk_output((WRK_SAMPLES / "b0-c100.txt").read_text())
    assert result.requests == 81999
    assert result.duration_s == pytest.approx(3.05)
    assert result.requests_per_s == pytest.approx(26864.88)
    assert result.p50_ms == pytest.approx(3.44)
    assert result.p99_ms == pytest.approx(15.41)
    assert result.latency_avg_ms == pytest.approx(4.03)
    assert result.latency_max_ms == pytest.approx(59.97)
    assert result.non_2xx_3xx == 0
    assert result.socket_errors == 0


def test_parse_non_2xx() -> None:
    result = parse_wrk_output((WRK_SAMPLES / "b3-c100-non2xx.txt").read_text())
    assert result.requests == 4799
    assert result.non_2xx_3xx == 893
    assert result.p99_ms == pytest.approx(141.39)
    assert result.ok_requests_per_s == pytest.approx(1591.62 * (4799 - 893) / 4799)


def test_parse_socket_errors_and_seconds() -> None:
    result = parse_wrk_output((WRK_SAMPLES / "b3-c1000-errors.txt").read_text())
    assert (result.connect_errors, result.read_errors) == (0, 1642)
    assert (result.write_errors, result.timeouts) == (0, 43)
    assert result.socket_errors == 1685
    assert result.non_2xx_3xx == 40512
    assert result.p99_ms == pytest.approx(1060.0)  # "1.06s"
    assert result.latency_max_ms == pytest.approx(1970.0)


def test_parse_rejects_output_without_latency() -> None:
    with pytest.raises(WrkError):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_report_ratios_use_successful_answers() -> None:
    clean = parse_wrk_output((WRK_SAMPLES / "b0-c100.txt").read_text())
    failing = parse_wrk_output((WRK_SAMPLES / "b3-c100-non2xx.txt").read_text())
    items = [
        Measurement("b3", "B3", 100, failing),
        Measurement("b0", "B0", 100, clean),
        Measurement("b1", "B1", 100, error="did not start"),
    ]
    add_ratios(items, ("b3", "b1"))
    assert items[0].ratios == {"b3": 1.0, "b1": None}
    assert items[1].ratios["b3"] == pytest.approx(26864.88 / (1591.62 * 3906 / 4799), 0.01)
    table = markdown_table(items, ("b3", "b1"))
    assert "| B0 | 100 | 26,865 | 26,865 | 3.44 | 15.4 | 0 | 0/0/0/0 |" in table
    assert "failed: did not start" in table
    assert table.splitlines()[0].endswith("| server CPU µs/req | CPU per ok answer vs B3 |")
    items[1].cpu_s = {"nginx": 20.4e-6 * 81999, "uwsgi": 80.0e-6 * 81999}
    assert "| 100 (nginx 20, uwsgi 80) | — |" in markdown_table(items, ("b3", "b1"))


def test_report_cpu_per_process_group_and_ratio_to_b3() -> None:
    clean = parse_wrk_output((WRK_SAMPLES / "b0-c100.txt").read_text())  # 81,999 requests
    b3 = Measurement("b3", "B3", 100, clean, cpu_s={"uwsgi": 16.4, "nginx": 4.1}, cores=2)
    b3.cpu_window_s = 10.0
    ours = Measurement(
        "ipgeo-up",
        "ipgeo up",
        100,
        clean,
        cpu_s={"ipgeo-up": 0.0031, "uwsgi": 6.15, "nginx": 2.05},
        cpu_window_s=10.0,
        cores=2,
    )
    skipped = Measurement("echoip", "echoip", 100, error="echoip skipped: no Go", skipped=True)
    items = [b3, ours, skipped]
    add_ratios(items, ("b3",))
    assert ours.cpu_ratios["b3"] == pytest.approx(100 / 250, abs=0.01)
    assert ours.machine_share("ipgeo-up") == pytest.approx(0.0031 / 20)
    table = markdown_table(items, ("b3",))
    assert "| 100 (ipgeo-up 0, uwsgi 75, nginx 25) | 0.40x |" in table
    assert "| echoip | 100 | echoip skipped: no Go |" in table
    groups = cpu_table(items)
    assert "| ipgeo up | 100 | 81,999 | ipgeo-up | 0.00 | 0 | 0.02% |" in groups
    assert "| ipgeo up | 100 | 81,999 | uwsgi | 6.15 | 75 | 30.8% |" in groups
    assert "| ipgeo up | 100 | 81,999 | all | 8.20 | 100 | 41.0% |" in groups
    assert "echoip" not in groups


def test_merge_joins_adjacent_and_overlapping() -> None:
    assert merge([(10, 20), (0, 4), (5, 6), (18, 30), (40, 40)]) == [(0, 6), (10, 30), (40, 40)]


def test_database_gaps_are_the_ipv4_space_without_records(tmp_path: Path) -> None:
    record = city_record("Somewhere", "SW", "Town", 1.0, 2.0)
    db = write_mmdb(
        tmp_path / "small.mmdb",
        {"1.0.0.0/8": record, "2.0.0.0/16": record, "2.1.0.0/16": record, "9.9.9.0/24": record},
    )

    def ip(text: str) -> int:
        return int(ipaddress.IPv4Address(text))

    assert database_gaps(db) == [
        (0, ip("0.255.255.255")),
        (ip("2.2.0.0"), ip("9.9.8.255")),
        (ip("9.9.10.0"), ip("255.255.255.255")),
    ]


def test_excluded_ranges_match_the_bundled_database() -> None:
    """Outside the excluded ranges every address is public and found; inside, never both."""
    path = bundled_city_db()
    ranges = excluded_ranges(path)
    rng = random.Random(7)
    with maxminddb.open_database(str(path)) as reader:
        for _ in range(3000):
            address = rng.getrandbits(32)
            ip = ipaddress.IPv4Address(address)
            usable = not ip.is_multicast and ip.is_global and reader.get(ip) is not None
            assert is_excluded(address, ranges) == (not usable), ip


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths: list[str] = []  # noqa: RUF012 (one list per test, set by the fixture)

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when wrk hangs up mid-request at the end of its run (not the test's error)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (_Recorder,), {"paths": paths})
    server = _RecordingServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", paths
    server.shutdown()
    server.server_close()


def test_lua_script_asks_for_random_allowed_addresses(
    tmp_path: Path, recording_server: tuple[str, list[str]]
) -> None:
    """Real wrk with the generated script: only addresses outside the excluded ranges."""
    url, paths = recording_server
    allowed = [ipaddress.IPv4Network("1.0.0.0/8"), ipaddress.IPv4Network("77.16.0.0/12")]
    excluded = [
        (0, int(ipaddress.IPv4Address("0.255.255.255"))),
        (int(ipaddress.IPv4Address("2.0.0.0")), int(ipaddress.IPv4Address("77.15.255.255"))),
        (int(ipaddress.IPv4Address("77.32.0.0")), 2**32 - 1),
    ]
    script = write_lua_script(tmp_path / "lookup.lua", "/api/v1/lookup/", excluded)
    result, _ = run_wrk(url, script, threads=2, connections=4, duration_s=1)
    assert result.requests > 50
    assert result.non_2xx_3xx == 0
    assert len(paths) >= result.requests
    addresses = [ipaddress.IPv4Address(path.removeprefix("/api/v1/lookup/")) for path in paths]
    assert all(any(ip in net for net in allowed) for ip in addresses)
    assert len(set(addresses)) > 0.95 * len(addresses)  # fresh addresses, not a small pool
    assert {ip in allowed[1] for ip in addresses} == {True, False}


def test_wrk_refuses_non_loopback_targets(tmp_path: Path) -> None:
    script = write_lua_script(tmp_path / "lookup.lua", "/", [(0, 0)])
    with pytest.raises(WrkError, match="loopback-only"):
        run_wrk("http://192.0.2.1/", script, threads=1, connections=1, duration_s=1)


@pytest.mark.skipif(deploy_dir() is None, reason="deploy/ is not on this branch yet")
def test_deploy_nginx_config_renders_and_passes_nginx_t(tmp_path: Path) -> None:
    """The bench's rendering of deploy/nginx is a config nginx accepts."""
    deploy = deploy_dir()
    assert deploy is not None
    conf = render_nginx(deploy, tmp_path, 8999, tmp_path / "uwsgi.sock")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", str(tmp_path / "err.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_render_nginx_names_a_template_variable_it_does_not_know(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    (deploy / "nginx").mkdir(parents=True)
    (deploy / "uwsgi.ini").write_text("[uwsgi]\nharakiri = 20 ; seconds\n")
    (deploy / "nginx" / "nginx.conf.j2").write_text("pid {{ run_dir }}/x.pid; {{ harakiri }}\n")
    (deploy / "nginx" / "ipgeo-site.conf.j2").write_text("{{ brand_new_setting }}\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(RuntimeError, match="brand_new_setting"):
        render_templates(deploy, run_dir, 8999, run_dir / "uwsgi.sock")
    (deploy / "nginx" / "ipgeo-site.conf.j2").write_text("listen {{ listens[0] }};\n")
    conf = render_templates(deploy, run_dir, 8999, run_dir / "uwsgi.sock")
    assert conf.read_text() == f"pid {run_dir}/x.pid; 20\n"
    assert (run_dir / "ipgeo-site.conf").read_text() == "listen 127.0.0.1:8999;\n"


@pytest.mark.parametrize(
    "module",
    ["bench.baselines.seed_app", "bench.baselines.geoip2_app", "bench.baselines.maxminddb_app"],
)
def test_baseline_apps_answer_like_a_lookup_service(module: str) -> None:
    app = __import__(module, fromlist=["app"]).app
    client = app.test_client()
    answer = client.get("/api/v1/lookup/81.2.69.142")
    assert answer.status_code == 200
    assert answer.json["country_iso"] == "GB"
    assert client.get("/api/v1/lookup/not-an-ip").status_code == 400
    assert client.get("/api/v1/lookup/10.0.0.1").status_code == 404


def test_floor_app_answers_a_constant() -> None:
    from bench.baselines.floor_app import ANSWER, app

    client = app.test_client()
    assert client.get("/api/v1/lookup/1.2.3.4").data == ANSWER
    assert client.get("/api/v1/lookup/5.6.7.8").data == ANSWER
    assert 250 <= len(ANSWER) <= 350


def test_median_round_is_reported_and_failures_win() -> None:
    from dataclasses import replace

    base = parse_wrk_output((WRK_SAMPLES / "b0-c100.txt").read_text())
    rounds = [
        Measurement("b0", "B0", 100, replace(base, requests_per_s=rate), round=n)
        for n, rate in enumerate([300.0, 100.0, 200.0], start=1)
    ]
    chosen = median_rounds(rounds)
    assert [item.round for item in chosen] == [3]
    failed = Measurement("b1", "B1", 100, error="boom", round=2)
    ok = Measurement("b1", "B1", 100, base, round=1)
    assert median_rounds([ok, failed]) == [failed]


def test_batch_mode_posts_arrays_the_api_answers(tmp_path: Path, make_settings: object) -> None:
    """Real wrk, batch script, the real batch endpoint: every request is a full 200 batch."""
    from werkzeug.serving import make_server

    from ipgeo.web import create_app

    app = create_app(make_settings())  # type: ignore[operator]
    seen: list[int] = []
    flask_wsgi = app.wsgi_app

    def counting(environ: dict[str, object], start_response: object) -> object:
        seen.append(int(str(environ.get("CONTENT_LENGTH") or 0)))
        return flask_wsgi(environ, start_response)  # type: ignore[arg-type]

    app.wsgi_app = counting  # type: ignore[method-assign,assignment]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        excluded = excluded_ranges(bundled_city_db())
        script = write_lua_script(tmp_path / "batch.lua", "/api/v1/batch", excluded, batch=50)
        result, _ = run_wrk(
            f"http://127.0.0.1:{server.server_port}/",
            script,
            threads=1,
            connections=2,
            duration_s=1,
        )
    finally:
        server.shutdown()
    assert result.requests > 3
    assert result.non_2xx_3xx == 0
    assert seen and min(seen) > 50 * 8  # 50 dotted quads per body


def test_stack_counts_the_cpu_time_of_its_process_groups(tmp_path: Path) -> None:
    busy = "import os, time\nos.fork()\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)\n"  # noqa: E501
    with Stack(tmp_path, {"PATH": os.environ.get("PATH", "")}) as stack:
        stack.start("busy", [sys.executable, "-c", busy])
        stack.start("idle", [sys.executable, "-c", "import time; time.sleep(30)"])
        deadline = time.monotonic() + 20
        while stack.cpu_seconds()["busy"] < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        used = stack.cpu_seconds()
    assert used["busy"] >= 0.5  # both processes of the group: parent and forked child
    assert used["idle"] < 0.3


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [("/json?ip=", ""), ("/api/v1/lookup/", "?fields=ip,country_iso&lang=de")],
)
def test_lua_script_puts_the_address_between_prefix_and_suffix(
    tmp_path: Path, recording_server: tuple[str, list[str]], prefix: str, suffix: str
) -> None:
    url, paths = recording_server
    excluded = excluded_ranges(bundled_city_db())
    script = write_lua_script(tmp_path / "lookup.lua", prefix, excluded, path_suffix=suffix)
    result, _ = run_wrk(url, script, threads=1, connections=2, duration_s=1)
    assert result.requests > 10
    for path in paths:
        assert path.startswith(prefix) and path.endswith(suffix), path
        address = ipaddress.IPv4Address(path.removeprefix(prefix).removesuffix(suffix))
        assert not is_excluded(int(address), excluded)


def test_lua_script_refuses_odd_url_parts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain URL part"):
        write_lua_script(tmp_path / "x.lua", "/", [(0, 0)], path_suffix='"; os.exit() --')


def test_server_environment_leaves_out_the_callers_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPGEO_RATE_LIMIT", "1/minute")
    monkeypatch.setenv("WEB_CONCURRENCY", "9")
    env = server_environment(tmp_path)
    assert "IPGEO_RATE_LIMIT" not in env and "WEB_CONCURRENCY" not in env
    assert env["IPGEO_DATA_DIR"] == str(tmp_path / "data")


def test_stack_counts_and_stops_adopted_process_groups(tmp_path: Path) -> None:
    """A started process that starts a group of its own: counted, and killed if left behind."""
    spawner = (
        "import subprocess, sys, time\n"
        "busy = 'import time\\nend = time.process_time() + 0.4\\n"
        "while time.process_time() < end: pass\\ntime.sleep(60)'\n"
        "child = subprocess.Popen([sys.executable, '-c', busy], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with Stack(tmp_path, {"PATH": os.environ.get("PATH", "")}) as stack:
        started = stack.start("spawner", [sys.executable, "-c", spawner])
        deadline = time.monotonic() + 20
        while not started.log.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(started.log.read_text())
        stack.adopt("child", child)
        while stack.cpu_seconds()["child"] < 0.3 and time.monotonic() < deadline:
            time.sleep(0.1)
        used = stack.cpu_seconds()
    assert used["child"] >= 0.3
    assert used["spawner"] < 0.3  # its own group only: the child's session is not in it
    # The spawner's stop left the child running: the stack killed its group (init reaps it).
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(child).wait(timeout=5)


def _short_run() -> argparse.Namespace:
    return argparse.Namespace(
        connections=[4], threads=1, duration=1, warmup=0, timeout=2.0, batch=0
    )


def _processes_using(data_dir: Path) -> list[psutil.Process]:
    """Processes whose IPGEO_DATA_DIR is ``data_dir`` (everything a configuration started)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("IPGEO_DATA_DIR") == str(data_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _measure_once(tmp_path: Path, name: str, options: Options | None = None) -> Measurement:
    config = {config.name: config for config in all_configs(deployed=True)}[name]
    scripts = lua_scripts([config], 0, excluded_ranges(bundled_city_db()), tmp_path)
    workdir = tmp_path / name
    workdir.mkdir()
    options = options or Options(deploy=deploy_dir(), web_concurrency=2)
    [item] = measure_config(config, options, _short_run(), scripts[name], workdir)
    return item


needs_wrk_and_nginx = pytest.mark.skipif(
    shutil.which("wrk") is None or find_nginx() is None, reason="needs wrk and nginx"
)


@needs_wrk_and_nginx
@pytest.mark.parametrize("name", ["ipgeo-up", "ipgeo-up-query", "ipgeo-up-protected"])
def test_ipgeo_up_configs_count_every_program_and_leave_nothing(tmp_path: Path, name: str) -> None:
    """The real ``ipgeo up`` with the users' settings: every program's CPU, no leftovers."""
    item = _measure_once(tmp_path, name)
    assert item.result is not None, item.error
    assert item.result.requests > 0
    assert (item.result.non_2xx_3xx, item.result.socket_errors) == (0, 0)
    assert list(item.cpu_s) == ["ipgeo-up", "redis", "worker", "uwsgi", "nginx"]
    assert item.cpu_s["uwsgi"] > 0 and item.cpu_s["nginx"] > 0
    assert item.machine_share("ipgeo-up") is not None
    data_dir = tmp_path / name / "data"
    assert not _processes_using(data_dir)
    requests = (data_dir / "log" / "access.log").read_text().splitlines()
    lookups = [line for line in requests if "GET /api/v1/lookup/" in line]
    assert len(lookups) >= item.result.requests
    if name == "ipgeo-up-query":
        assert all(f'{QUERY_SUFFIX} HTTP/1.1" ' in line for line in lookups)


@needs_wrk_and_nginx
def test_echoip_peer_on_the_bundled_database(tmp_path: Path) -> None:
    options = Options(deploy=None, web_concurrency=None)
    if not echoip_binary(options).exists() and shutil.which("go") is None:
        pytest.skip("echoip is not built and Go is not installed (the benchmark builds it)")
    try:
        build_echoip(options)
    except ConfigUnavailable as exc:
        pytest.skip(str(exc))
    item = _measure_once(tmp_path, "echoip", options)
    assert item.result is not None, item.error
    assert item.result.requests > 0
    assert (item.result.non_2xx_3xx, item.result.socket_errors) == (0, 0)
    assert list(item.cpu_s) == ["echoip"]


def test_a_peer_that_cannot_be_built_is_skipped(tmp_path: Path) -> None:
    options = Options(deploy=None, web_concurrency=None, peers_dir=tmp_path, cache_dir=tmp_path)
    config = {config.name: config for config in all_configs(deployed=True)}["echoip"]
    unavailable = prepare_configs([config], options)
    assert "build-echoip.sh not found" in str(unavailable["echoip"])
    [item] = not_measured(config, _short_run(), unavailable["echoip"], 1)
    assert item.skipped and item.result is None


def test_cpu_ratio_counts_successful_answers_only() -> None:
    """B3's fast 502s cost little CPU: they must not make it look cheaper per answer."""
    failing = parse_wrk_output((WRK_SAMPLES / "b3-c100-non2xx.txt").read_text())  # 3,906 ok
    clean = parse_wrk_output((WRK_SAMPLES / "b0-c100.txt").read_text())  # 81,999 ok
    b3 = Measurement("b3", "B3", 100, failing, cpu_s={"uwsgi": 3906 * 200e-6})
    ours = Measurement("ipgeo-up", "ipgeo up", 100, clean, cpu_s={"uwsgi": 81999 * 100e-6})
    add_ratios([b3, ours], ("b3",))
    assert ours.cpu_ratios["b3"] == pytest.approx(0.5)
