"""The compose stack under podman, checked through the nginx container."""

from __future__ import annotations

import csv
import io
import random
import re
import socket
import threading
import time

import requests

from tests_containers.conftest import CHUNK_SIZE, WORKERS, Stack, free_port

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Accept": "text/html"}


def test_lookup_through_nginx(stack: Stack) -> None:
    resp = requests.get(stack.url + "/api/v1/lookup/8.8.8.8", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Server"] == "nginx"
    assert resp.json()["country_iso"] == "US"


def test_home_page_and_static_files(stack: Stack) -> None:
    page = requests.get(stack.url, headers=BROWSER, timeout=10)
    assert page.status_code == 200
    assert "GeoLite2" in page.text
    href = re.search(r'href="(/static/css/site\.css\?v=[0-9a-f]+)"', page.text)
    assert href
    css = requests.get(stack.url + href.group(1), timeout=10)
    assert css.status_code == 200
    assert css.headers["Server"] == "nginx"
    assert css.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "ETag" in css.headers


def test_client_ip_and_spoofing(stack: Stack) -> None:
    plain = requests.get(stack.url + "/ip", timeout=10).text
    assert re.fullmatch(r"[0-9a-f.:]+\n", plain)
    spoofed = requests.get(stack.url + "/ip", headers={"X-Forwarded-For": "1.2.3.4"}, timeout=10)
    assert spoofed.text == plain


def test_unknown_host_is_dropped(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: scanner.invalid\r\nConnection: close\r\n\r\n")
        assert sock.recv(1024) == b""


def test_every_container_is_healthy(stack: Stack) -> None:
    for name in stack.containers():
        if "_timezones_" not in name:  # the one-shot loader has exited
            # One check may time out on a busy machine; compose allows 3 retries too.
            stack.wait_healthy(name, timeout=30)


def test_visit_counter(stack: Stack) -> None:
    visits = requests.get(stack.url + "/json", timeout=10).json()["visits"]
    assert requests.get(stack.url + "/json", timeout=10).json()["visits"] == visits + 1


def test_bulk_job_runs_on_the_worker_container(stack: Stack) -> None:
    lines = b"8.8.8.8\n1.1.1.1\n81.2.69.142\nnot-an-ip\n"
    resp = requests.post(stack.url + "/api/v1/jobs", files={"file": ("ips.txt", lines)}, timeout=10)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    location = resp.headers["Location"]
    deadline = time.monotonic() + 60
    while (status := requests.get(stack.url + location, timeout=10).json())["status"] not in {
        "finished",
        "failed",
        "canceled",
    }:
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["status"] == "finished", status.get("error")
    assert status["summary"]["valid"] == 3
    # The upload went to the app container, a worker read it from the shared volume.
    worker_logs = "".join(stack.logs(stack.container("worker", n)) for n in range(1, WORKERS + 1))
    assert job_id in worker_logs
    result = requests.get(stack.url + location + "/result?format=csv", timeout=10)
    assert result.status_code == 200
    records = list(csv.DictReader(io.StringIO(result.text)))
    assert [(r["ip"], r["country_iso"]) for r in records][:1] == [("8.8.8.8", "US")]
    assert len(records) == 3


def _access_log(lines: int, seed: int = 18) -> tuple[bytes, list[int], list[str]]:
    """IPv4 and IPv6 clients with repeats, and bad lines: (body, valid line numbers, IPs)."""
    rng = random.Random(seed)  # noqa: S311 (test data)
    pool = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7" for _ in range(300)
    ]
    pool += [f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}" for _ in range(100)]
    pool += ["8.8.8.8", "81.2.69.142", "2a02:ff80::1"]
    out, numbers, ips = [], [], []
    for number in range(1, lines + 1):
        if number % 997 == 0:
            out.append("garbage without an address\n")
            continue
        ip = rng.choice(pool)
        numbers.append(number)
        ips.append(ip)
        out.append(
            f'{ip} - - [06/Dec/2026:08:00:00 +0000] "GET /item/{number} HTTP/1.1" 200 {number} '
            f'"-" "Mozilla/5.0"\n'
        )
    return "".join(out).encode(), numbers, ips


def test_chunked_job_spreads_over_the_workers_and_keeps_the_input_order(stack: Stack) -> None:
    body, numbers, ips = _access_log(20_000)
    assert len(body) > 8 * CHUNK_SIZE
    resp = requests.post(
        stack.url + "/api/v1/jobs", files={"file": ("access.log", body)}, timeout=60
    )
    assert resp.status_code == 202, resp.text
    job_id, location = resp.json()["id"], resp.headers["Location"]
    deadline = time.monotonic() + 180
    while (status := requests.get(stack.url + location, timeout=10).json())["status"] not in {
        "finished",
        "failed",
        "canceled",
    }:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["status"] == "finished", status.get("error")
    chunks = status["chunks"]
    assert chunks["total"] >= 8, chunks
    assert chunks == {"total": chunks["total"], "done": chunks["total"], "running": 0, "queued": 0}
    summary = status["summary"]
    assert summary["lines"] == 20_000
    assert summary["valid"] == len(numbers)
    assert summary["unparseable"] == 20_000 - len(numbers)
    # Chunk jobs are internal: the owner's list shows the one job.
    listed = requests.get(
        stack.url + "/api/v1/jobs", headers={"X-Job-Token": resp.json()["owner_token"]}, timeout=10
    ).json()["jobs"]
    assert [item["id"] for item in listed] == [job_id]
    # Both workers took chunks of it (RQ logs each job it takes, chunks as <id>-chunk-<n>).
    for n in range(1, WORKERS + 1):
        assert f"{job_id}-chunk-" in stack.logs(stack.container("worker", n)), f"worker {n}"
    result = requests.get(stack.url + location + "/result?format=csv", timeout=60)
    assert result.status_code == 200
    records = list(csv.DictReader(io.StringIO(result.text)))
    assert [int(r["line"]) for r in records] == numbers  # merged in input order
    assert [r["ip"] for r in records] == ips
    assert {r["source"] for r in records} == {"access.log"}


def test_postgis_time_zone_fill_in_is_ready(stack: Stack) -> None:
    # The one-shot `timezones` service loaded the polygons (podman-compose 1.0 does not wait
    # for it to complete, so the app may first report degraded and recover by itself).
    deadline = time.monotonic() + 180
    while True:
        ready = requests.get(stack.url + "/readyz", timeout=10).json()
        if ready["checks"].get("postgres", {}).get("status") == "ok":
            break
        assert time.monotonic() < deadline, ready
        time.sleep(1)
    assert ready["status"] == "ok", ready
    loader = stack.podman("inspect", "-f", "{{.State.ExitCode}}", stack.container("timezones"))
    assert loader.stdout.strip() == "0"


def test_dashboard_on_its_own_port(stack: Stack) -> None:
    assert requests.get(stack.dashboard_url + "/", timeout=10).status_code == 401
    wrong = requests.get(stack.dashboard_url + "/", auth=("ipgeo", "wrong"), timeout=10)
    assert wrong.status_code == 401
    page = requests.get(stack.dashboard_url + "/", auth=stack.dashboard_auth, timeout=10)
    assert page.status_code == 200
    assert "RQ" in page.text
    # The worker list (JSON-serialized jobs) renders: the JSON worker class is used.
    workers = requests.get(
        stack.dashboard_url + "/0/data/workers.json", auth=stack.dashboard_auth, timeout=10
    )
    assert workers.status_code == 200, workers.text
    assert len(workers.json()["workers"]) >= 1


def test_allowlist_denial_by_nginx(stack: Stack) -> None:
    # A second nginx in the stack's network with an allowlist that excludes this client.
    port = free_port()
    name = f"{stack.project}-nginx-allow"
    stack.podman(
        "run", "-d", "--name", name, "--network", stack.network(), "-p", f"127.0.0.1:{port}:8080",
        "-e", "IPGEO_ALLOWED=192.0.2.0/24;", "localhost/ipgeo-all-in-one:latest",
        "ipgeo", "nginx", "--listen", "8080", "--upstream", "app:3031", "--resolver", "auto",
        "--run-dir", "/run/ipgeo/nginx",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break  # health checks are exempt, as in the app
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, stack.podman("logs", name).stderr
            time.sleep(0.5)
        denied = requests.get(url + "/api/v1/lookup/8.8.8.8", timeout=10)
        assert denied.status_code == 403
        assert denied.headers["Server"] == "nginx"
        assert "<center>nginx</center>" in denied.text
    finally:
        stack.podman("rm", "-f", name, check=False)


def test_rolling_restart_under_load_loses_no_request(stack: Stack) -> None:
    results: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                resp = session.get(stack.url + "/api/v1/lookup/8.8.8.8", timeout=15)
                results.append(resp.status_code)
            except requests.RequestException as exc:
                results.append(type(exc).__name__)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        for num in (1, 2):
            name = stack.container("app", num)
            stack.podman("restart", "-t", "10", name)
            stack.wait_healthy(name)
            time.sleep(4)  # nginx re-resolves `app` (every 2 s) before the next restart
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    failures = [r for r in results if r != 200]
    print(f"rolling restart: {len(results)} requests, {len(failures)} failed")
    assert len(results) > 200, len(results)
    assert not failures, f"{len(failures)} of {len(results)} failed: {failures[:10]}"
    # Both replicas answered (nginx logs the upstream of every request).
    logs = stack.podman("logs", stack.container("nginx")).stdout
    upstreams = set(re.findall(r"upstream=([0-9.]+:3031)", logs))
    assert len(upstreams) >= 2, upstreams


def test_zz_stack_stops_within_10_seconds(stack: Stack) -> None:
    names = stack.containers()
    took: dict[str, float] = {}
    errors: dict[str, str] = {}  # what podman said (it warns when it resorts to SIGKILL)
    failed: list[str] = []

    def stop(name: str) -> None:  # one at a time in parallel: the slow one is named
        begun = time.monotonic()
        stopped = stack.podman("stop", "-t", "10", name, check=False)
        took[name] = time.monotonic() - begun
        if stopped.stderr.strip():
            errors[name] = stopped.stderr.strip()
        if stopped.returncode != 0:
            failed.append(name)

    started = time.monotonic()
    threads = [threading.Thread(target=stop, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    slow = {name: round(seconds, 1) for name, seconds in took.items() if seconds >= 5}
    print(f"stopped {len(names)} containers in {elapsed:.1f} s: {took}")
    tails = {name: stack.podman("logs", "--tail", "15", name, check=False) for name in slow}
    logs = {name: (out.stdout + out.stderr)[-1500:] for name, out in tails.items()}
    assert elapsed < 10, f"stopping took {elapsed:.1f} s: {slow} {errors} {logs}"
    assert not failed, errors
    running = stack.podman(
        "ps", "--filter", f"label=io.podman.compose.project={stack.project}", "--format",
        "{{.Names}}",
    ).stdout.split()  # fmt: skip
    assert not running


def test_time_zone_polygons_work_in_the_trimmed_image(stack: Stack) -> None:
    # The runtime image drops parts of numpy; timezonefinder must still work.
    code = (
        "from timezonefinder import TimezoneFinder;"
        "print(TimezoneFinder().timezone_at(lng=13.4, lat=52.5))"
    )
    out = stack.podman("run", "--rm", "localhost/ipgeo:latest", "python", "-c", code).stdout
    assert out.strip() == "Europe/Berlin"


def test_all_in_one_image_serves_and_exits_when_uwsgi_dies(stack: Stack) -> None:
    port = free_port()
    name = f"{stack.project}-aio"
    stack.podman(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
        "-e", "IPGEO_SERVER_NAMES=127.0.0.1;localhost", "localhost/ipgeo-all-in-one:latest",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, stack.podman("logs", name).stdout
            time.sleep(0.5)
        resp = requests.get(url + "/api/v1/lookup/8.8.8.8", timeout=10)
        assert resp.json()["country_iso"] == "US"
        assert resp.headers["Server"] == "nginx"
        assert stack.healthy(name)
        users = stack.podman("exec", name, "ps", "-eo", "user=", check=False).stdout.split()
        if users:  # procps may be absent; then check /proc below
            assert set(users) == {"ipgeo"}
        owners = stack.podman(
            "exec", name, "sh", "-c", "stat -c %U /proc/[0-9]*/ 2>/dev/null | sort -u"
        ).stdout.split()
        assert owners == ["ipgeo"], owners  # supervisord, nginx and uWSGI: nobody is root
        # uWSGI's master is supervisord's (pid 1) child running the uwsgi command.
        kill_uwsgi = (
            "import os, signal\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
            "    ppid = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1]\n"
            "    if ppid == '1' and cmd[1:2] == [b'/opt/venv/bin/uwsgi']:\n"
            "        os.kill(int(pid), signal.SIGKILL)\n"
        )
        stack.podman("exec", name, "python3", "-c", kill_uwsgi)
        waited = stack.podman("wait", name, timeout=30).stdout.strip()  # it ends by itself
        assert waited.isdigit()
        logs = stack.podman("logs", name).stderr + stack.podman("logs", name).stdout
        assert "exit-on-failure" in logs
    finally:
        stack.podman("rm", "-f", name, check=False)
