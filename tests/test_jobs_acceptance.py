"""Acceptance of issue 6 with real processes: `ipgeo serve`, redis-server, `ipgeo worker`."""

from __future__ import annotations

import csv
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from rq.registry import CanceledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from ipgeo.jobs import JobFiles, JobOptions, enqueue, new_job_id
from ipgeo.jobs.worker import start_worker_process, stop_worker
from ipgeo.settings import Settings
from tests.loggen import public_ips
from tests.servers import AppServer, RedisServer

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

LOG_LINES = 200_000
BAD_EVERY = 5_000  # one unparseable line in every 5,000
DASHBOARD = ("jobs-admin", "s3cret-pass")


def write_log(path: Path, lines: int, distinct: int, seed: int = 6) -> tuple[int, set[str]]:
    """A combined log with Zipf-like clients and a few bad lines; (bad lines, distinct IPs)."""
    rng = random.Random(seed)
    pool = public_ips(rng, distinct)
    cumulative: list[float] = []
    total = 0.0
    for rank in range(len(pool)):
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    clients = rng.choices(pool, cum_weights=cumulative, k=lines)
    bad = 0
    seen: set[str] = set()
    with path.open("w") as out:
        for number, ip in enumerate(clients, 1):
            if number % BAD_EVERY == 0:
                out.write("not a log line at all\n")
                bad += 1
                continue
            seen.add(ip)
            out.write(
                f'{ip} - - [10/Oct/2024:13:55:36 +0000] "GET /page/{number} HTTP/1.1" 200 '
                f'{number % 9000} "https://example.org/" "Mozilla/5.0 (X11; Linux x86_64)"\n'
            )
    return bad, seen


@dataclass
class Stack:
    app: AppServer
    redis: RedisServer
    data_dir: Path
    env: dict[str, str]
    logs: Path
    worker: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmp: Path, workers: int, **settings: str) -> Stack:
        """Redis, the app (``workers`` processes) and one job worker, with ``settings``."""
        server = RedisServer(tmp).start()
        data_dir = tmp / "data"
        env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
        env |= {
            "IPGEO_DATA_DIR": str(data_dir),
            "IPGEO_DNS_SERVERS": "127.0.0.1:9",
            "IPGEO_REDIS_URL": server.url,
            "IPGEO_JOB_PROGRESS_INTERVAL": "0.05",
            **settings,
        }
        app = AppServer(env, tmp / "app.log", workers=workers).start()
        logs = tmp / "worker-logs"
        logs.mkdir()
        stack = cls(app, server, data_dir, env, logs)
        stack.start_worker()
        return stack

    def stop(self) -> None:
        """Stop the worker, the app and Redis."""
        if self.worker is not None:
            stop_worker(self.worker, os.getpid())
        self.app.stop()
        self.redis.stop()

    def start_worker(self) -> subprocess.Popen[bytes]:
        output = (self.logs / f"worker-{time.monotonic_ns()}.log").open("wb")
        self.worker = start_worker_process(self.redis.url, self.env, output)
        return self.worker

    def submit(self, path: Path, **params: str) -> dict[str, Any]:
        with path.open("rb") as body:
            response = requests.post(
                f"{self.app.url}/api/v1/jobs",
                params={"name": path.name, **params},
                data=body,
                headers={"Content-Type": "application/octet-stream"},
                timeout=60,
            )
        assert response.status_code == 202, response.text
        assert response.headers["Location"] == f"/api/v1/jobs/{response.json()['id']}"
        return dict(response.json())

    def delete(self, job: dict[str, Any]) -> requests.Response:
        """DELETE a job with its owner token."""
        return requests.delete(
            f"{self.app.url}/api/v1/jobs/{job['id']}",
            headers={"X-Job-Token": job["owner_token"]},
            timeout=10,
        )

    def status(self, job_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.app.url}/api/v1/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(job_id)
            if state["status"] in statuses:
                return state
            assert time.monotonic() < deadline, f"job stuck: {state}\n{self.worker_log()}"
            time.sleep(0.05)

    def wait_running(self, job_id: str) -> dict[str, Any]:
        """Wait until the job runs and has reported some progress."""
        deadline = time.monotonic() + 60
        while True:
            state = self.status(job_id)
            if state["status"] == "started" and (state["progress"] or {}).get("done"):
                return state
            assert state["status"] in {"queued", "started"}, state
            assert time.monotonic() < deadline, f"job never ran: {state}\n{self.worker_log()}"
            time.sleep(0.02)

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def worker_log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:] for path in self.logs.glob("*.log")
        )


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, set[str]]:
    path = tmp_path_factory.mktemp("logs") / "access.log"
    bad, seen = write_log(path, LOG_LINES, 20_000)
    return path, bad, seen


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    item = Stack.start(
        tmp_path_factory.mktemp("jobs-stack"),
        2,
        IPGEO_JOB_RETRIES="0",  # a killed job fails at once (retries: their own test)
        IPGEO_DASHBOARD_USER=DASHBOARD[0],
        IPGEO_DASHBOARD_PASSWORD=DASHBOARD[1],
    )
    yield item
    item.stop()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def test_big_log_finishes_with_progress_and_one_csv_row_per_line(
    stack: Stack, big_log: tuple[Path, int, set[str]]
) -> None:
    path, bad, seen = big_log
    job = stack.submit(path)
    assert job["status"] == "queued"
    assert job["input"] == {"name": "access.log", "bytes": path.stat().st_size}
    observed: list[int] = []
    statuses = set()
    deadline = time.monotonic() + 120
    while True:
        state = stack.status(job["id"])
        statuses.add(state["status"])
        progress = state["progress"]
        if state["status"] == "started" and progress and progress["done"]:
            if not observed or progress["done"] != observed[-1]:
                observed.append(progress["done"])
            assert progress["total"] == path.stat().st_size
            assert 0 <= progress["percent"] <= 100
            assert progress["rate"] > 0
            assert progress["eta_seconds"] is not None
        if state["status"] in {"finished", "failed", "canceled"}:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.02)  # the job reports every 0.05 s and now takes about a second
    assert state["status"] == "finished", state
    assert "started" in statuses
    assert len(observed) >= 3, f"progress seen only at {observed}"
    assert observed == sorted(observed), observed
    assert state["progress"]["percent"] == 100.0
    summary = state["summary"]
    assert summary["lines"] == LOG_LINES
    assert summary["unparseable"] == bad
    assert summary["valid"] == LOG_LINES - bad
    assert summary["rows"] == LOG_LINES - bad
    assert summary["distinct_ips"] == len(seen)
    assert summary["valid"] == summary["located"] + summary["reserved"] + summary["not_found"]
    assert len(summary["top"]["countries"]) == 10
    assert sum(summary["country_counts"].values()) >= summary["top"]["countries"][0]["count"]
    assert set(state["links"]["result"]) == {"csv", "ndjson", "json"}
    job_dir = stack.job_dir(job["id"])
    assert sorted(item.name for item in job_dir.iterdir()) == ["result.ndjson"]

    response = requests.get(
        f"{stack.app.url}/api/v1/jobs/{job['id']}/result?format=csv", stream=True, timeout=60
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "access-ipgeo.csv" in response.headers["Content-Disposition"]
    # Streamed row by row: the test process stays small (it forks other tests' processes).
    reader = csv.reader(line.decode() for line in response.iter_lines())
    header = next(reader)
    line, source, ip = header.index("line"), header.index("source"), header.index("ip")
    expected = (n for n in range(1, LOG_LINES + 1) if n % BAD_EVERY)
    count = 0
    for row in reader:
        count += 1
        assert int(row[line]) == next(expected)
        assert row[source] == "access.log"
        assert ipaddress.ip_address(row[ip])
    assert count == LOG_LINES - bad  # one row per valid line (bad lines are reported)

    ndjson = requests.get(
        f"{stack.app.url}/api/v1/jobs/{job['id']}/result?format=ndjson", stream=True, timeout=60
    )
    assert sum(1 for _ in ndjson.iter_lines()) == LOG_LINES - bad
    as_json = requests.get(
        f"{stack.app.url}/api/v1/jobs/{job['id']}/result?format=json", stream=True, timeout=60
    )
    lines = as_json.iter_lines()
    assert next(lines) == b"["
    assert sum(1 for item in lines if item.startswith(b"{")) == LOG_LINES - bad
    page = requests.get(f"{stack.app.url}/jobs/{job['id']}", timeout=10)
    assert page.status_code == 200
    assert 'id="choropleth"' in page.text and f"{LOG_LINES:,}" in page.text
    listed = requests.get(
        f"{stack.app.url}/api/v1/jobs", headers={"X-Job-Token": job["owner_token"]}, timeout=10
    ).json()["jobs"]
    assert job["id"] in [item["id"] for item in listed]


def test_chunked_upload_is_streamed(stack: Stack) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(50):
            yield b"8.8.8.8\n81.2.69.142\n" * 100

    response = requests.post(
        f"{stack.app.url}/api/v1/jobs?name=chunks.txt", data=body(), timeout=30
    )
    assert response.status_code == 202, response.text
    assert response.json()["input"]["bytes"] == 50 * 100 * 20
    state = stack.wait_for(response.json()["id"], {"finished", "failed"})
    assert state["summary"]["lines"] == 10_000


def test_cancel_during_a_run_leaves_no_partial_file(
    stack: Stack, big_log: tuple[Path, int, set[str]]
) -> None:
    job = stack.submit(big_log[0])
    stack.wait_running(job["id"])
    response = stack.delete(job)
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    state = stack.wait_for(job["id"], {"canceled", "finished", "failed"}, timeout=30)
    assert state["status"] == "canceled", state
    assert state["progress"]["percent"] < 100
    job_dir = stack.job_dir(job["id"])
    assert list(job_dir.iterdir()) == []  # no partial output, no input left
    registry = CanceledJobRegistry(
        "bulk", connection=stack.redis.client(), serializer=JSONSerializer
    )
    assert job["id"] in registry.get_job_ids()
    result = requests.get(f"{stack.app.url}/api/v1/jobs/{job['id']}/result", timeout=10)
    assert result.status_code == 409
    assert result.json()["error"]["code"] == "result_not_ready"


def test_cancel_of_a_queued_job_is_immediate(
    stack: Stack, big_log: tuple[Path, int, set[str]], tmp_path: Path
) -> None:
    busy = stack.submit(big_log[0])
    stack.wait_running(busy["id"])  # the only worker is busy: the next job waits
    small = tmp_path / "ips.txt"
    small.write_text("8.8.8.8\n81.2.69.142\n")
    job = stack.submit(small)
    assert stack.status(job["id"])["status"] == "queued"
    response = stack.delete(job)
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert not stack.job_dir(job["id"]).exists()
    assert stack.delete(busy).status_code == 202
    stack.wait_for(busy["id"], {"canceled"}, timeout=30)
    assert stack.status(job["id"])["status"] == "canceled"  # the worker never ran it
    gone = stack.delete(job)
    assert gone.status_code == 204  # an ended job is deleted
    assert requests.get(f"{stack.app.url}/api/v1/jobs/{job['id']}", timeout=10).status_code == 404


def test_killed_work_horse_fails_the_job_and_the_worker_goes_on(
    stack: Stack, big_log: tuple[Path, int, set[str]], tmp_path: Path
) -> None:
    assert stack.worker is not None
    job = stack.submit(big_log[0])
    stack.wait_running(job["id"])
    horses = _children(stack.worker.pid)
    assert len(horses) == 1, horses
    killed_at = time.monotonic()
    os.kill(horses[0], signal.SIGKILL)
    state = stack.wait_for(job["id"], {"failed", "finished", "canceled"}, timeout=10)
    assert time.monotonic() - killed_at < 10
    assert state["status"] == "failed", state
    assert state["error"]["code"] == "worker_died"
    assert "signal 9" in state["error"]["message"]
    assert state["error"]["message"].startswith("chunk 1 of 1: ")  # names the chunk
    assert not (stack.job_dir(job["id"]) / "result.ndjson.partial").exists()
    assert not (stack.job_dir(job["id"]) / "result.ndjson").exists()
    page = requests.get(f"{stack.app.url}/jobs/{job['id']}", timeout=10)
    assert page.status_code == 200
    assert "worker process running this job died" in page.text

    small = tmp_path / "ips.txt"
    small.write_text("8.8.8.8\n81.2.69.142\n")
    after = stack.submit(small)
    assert stack.wait_for(after["id"], {"finished", "failed"})["status"] == "finished"


def test_with_retries_a_killed_job_runs_again(
    stack: Stack, big_log: tuple[Path, int, set[str]]
) -> None:
    """IPGEO_JOB_RETRIES=1 (read by whoever queues the job): the job is retried, then done."""
    assert stack.worker is not None
    settings = Settings.from_env(
        {key: value for key, value in stack.env.items() if key.startswith("IPGEO_")}
        | {"IPGEO_JOB_RETRIES": "1"}
    )
    job_id = new_job_id()
    files = JobFiles.of(settings.data_dir, job_id)
    files.directory.mkdir(parents=True)
    shutil.copy(big_log[0], files.input)
    enqueue(
        stack.redis.client(), settings, job_id, JobOptions(), "access.log",
        files.input.stat().st_size, None,
    )  # fmt: skip
    stack.wait_running(job_id)
    os.kill(_children(stack.worker.pid)[0], signal.SIGKILL)
    state = stack.wait_for(job_id, {"finished", "failed", "canceled"}, timeout=60)
    assert state["status"] == "finished", state
    assert state["summary"]["lines"] == LOG_LINES


def test_a_new_worker_takes_over_after_the_worker_is_killed(
    stack: Stack, big_log: tuple[Path, int, set[str]], tmp_path: Path
) -> None:
    assert stack.worker is not None
    running = stack.submit(big_log[0])
    stack.wait_running(running["id"])
    small = tmp_path / "ips.txt"
    small.write_text("8.8.8.8\n")
    waiting = stack.submit(small)
    os.killpg(stack.worker.pid, signal.SIGKILL)  # the worker and its work-horse
    stack.worker.wait()
    assert stack.status(waiting["id"])["status"] == "queued"
    stack.start_worker()
    assert stack.wait_for(waiting["id"], {"finished", "failed"})["status"] == "finished"
    # The dead worker's chunk fails once its heartbeat expires (about 20 s): pretend time passed.
    client = stack.redis.client()
    registry = StartedJobRegistry("bulk", connection=client, serializer=JSONSerializer)
    chunk = f"{running['id']}-chunk-000000"
    assert chunk in [key.split(":")[0] for key in registry.get_job_ids()]
    registry.cleanup(timestamp=time.time() + 600)
    state = stack.wait_for(running["id"], {"failed", "finished", "canceled"})  # after the merge
    assert state["status"] == "failed", state
    assert state["error"]["code"] == "worker_lost"
    assert state["error"]["message"].startswith("chunk 1 of 1: the worker running this job")


def test_dashboard_needs_the_password(stack: Stack) -> None:
    url = f"{stack.app.url}/admin/rq/"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("jobs-admin", "wrong"), timeout=10).status_code == 401
    page = requests.get(url, auth=DASHBOARD, timeout=10)
    assert page.status_code == 200
    assert "RQ dashboard" in page.text
    queues = requests.get(f"{url}0/data/queues.json", auth=DASHBOARD, timeout=10).json()
    assert [queue["name"] for queue in queues["queues"]] == ["bulk"]
    workers = requests.get(f"{url}0/data/workers.json", auth=DASHBOARD, timeout=10).json()
    assert workers["workers"]
    static = requests.get(f"{url}static/js/jquery-3.5.1.min.js", auth=DASHBOARD, timeout=10)
    assert static.status_code == 200


def test_failed_input_is_reported_and_not_retried(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_text('{"who": {"addr": "8.8.8.8"}}\n{"who": {"addr": "1.1.1.1"}}\n')
    job = stack.submit(data, input_format="jsonl")
    state = stack.wait_for(job["id"], {"failed", "finished"})
    assert state["status"] == "failed"
    assert state["error"]["code"] == "bad_input"
    assert "ip-field" in state["error"]["message"] or "IP field" in state["error"]["message"]
    ok = stack.submit(data, input_format="jsonl", ip_field="who.addr", mode="unique")
    done = stack.wait_for(ok["id"], {"failed", "finished"})
    assert done["status"] == "finished", done
    assert done["summary"]["distinct_ips"] == 2
    rows = requests.get(
        f"{stack.app.url}/api/v1/jobs/{ok['id']}/result?format=json", timeout=10
    ).json()
    assert sorted(row["ip"] for row in rows) == ["1.1.1.1", "8.8.8.8"]
    assert all(row["hits"] == 1 for row in rows)
