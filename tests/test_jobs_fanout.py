"""Issue 18: jobs cut into chunks that real `ipgeo worker` processes share (real redis-server).

Results are compared byte for byte with `ipgeo bulk` on the same file: CSV, NDJSON and JSON,
per line and unique, plain and gzip, with one and with two workers (a log of 150,000 lines,
several chunks of IPGEO_JOB_CHUNK_SIZE=8M), and the 2,000,000-line log of the acceptance test
as CSV. The time columns are left out: they hold the time of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer

from bench.accesslog import write_log_file
from ipgeo.bulk import PER_LINE_DEFAULT, UNIQUE_DEFAULT
from ipgeo.jobs import JobFiles, JobOptions, enqueue, new_job_id, new_owner_token, owner_hash
from ipgeo.jobs.worker import start_worker_process, stop_worker
from ipgeo.settings import Settings
from ipgeo.web import create_app
from tests.servers import RedisServer, wait_until

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

MATRIX_LINES = 150_000
FULL_LINES = 2_000_000
CHUNK_SIZE = 8 * 1024 * 1024
NAME = "access.log"
# Every default column but the ones that depend on when the job runs.
TIMELESS = ("local_time",)
PER_LINE_FIELDS = tuple(name for name in PER_LINE_DEFAULT if name not in TIMELESS)
UNIQUE_FIELDS = tuple(name for name in UNIQUE_DEFAULT if name not in TIMELESS)
FORMATS = ("csv", "ndjson", "json")


def _digest(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return _digest(iter(lambda: handle.read(1 << 20), b""))


@dataclass
class Reference:
    """What `ipgeo bulk` gives for one file and mode: a digest per format, and the summary."""

    digests: dict[str, str]
    summary: dict[str, Any]


def _job_summary(summary: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """`ipgeo bulk --summary-format json --top 300` as a job reports it (top lists cut)."""
    data = {key: value for key, value in summary.items() if key != "seconds"}
    data["country_counts"] = {item["key"]: item["count"] for item in data["top"]["countries"]}
    data["top"] = {name: items[:top] for name, items in data["top"].items()}
    return data


def reference(path: Path, unique: bool, formats: tuple[str, ...], out_dir: Path) -> Reference:
    """Run `ipgeo bulk` in ``path``'s directory (rows name the file as the jobs do)."""
    fields = UNIQUE_FIELDS if unique else PER_LINE_FIELDS
    digests, summary = {}, {}
    for fmt in formats:
        output = out_dir / f"reference-{'unique' if unique else 'per-line'}.{fmt}"
        done = subprocess.run(
            [sys.executable, "-m", "ipgeo", "bulk", path.name, "--format", fmt,
             "--fields", ",".join(fields), "--unique" if unique else "--per-line",
             "--top", "300", "--summary", "--summary-format", "json", "-o", str(output)],
            cwd=path.parent, env=_cli_env(), capture_output=True, text=True, check=False,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        digests[fmt] = _file_digest(output)
        output.unlink()
        summary = json.loads(done.stdout)
    return Reference(digests, _job_summary(summary))


def _cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    return env | {"IPGEO_DNS_SERVERS": "127.0.0.1:9"}


@dataclass
class Cluster:
    """A redis-server, the web app (in this process) and any number of `ipgeo worker`s."""

    redis: RedisServer
    env: dict[str, str]
    settings: Settings
    client: FlaskClient
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def scale(self, count: int) -> None:
        """Start or (warm-)stop workers until ``count`` run."""
        while len(self.workers) > count:
            stop_worker(self.workers.pop(), os.getpid())
        while len(self.workers) < count:
            log = (self.logs / f"worker-{len(self.workers)}-{time.monotonic_ns()}.log").open("wb")
            self.workers.append(start_worker_process(self.redis.url, self.env, log))

    def submit(self, path: Path, unique: bool, chunk_size: int = CHUNK_SIZE) -> str:
        """Queue a job for ``path`` (linked in as the job's upload, named ``NAME``)."""
        job_id = new_job_id()
        files = JobFiles.of(self.settings.data_dir, job_id)
        files.directory.mkdir(parents=True)
        os.link(path, files.input)
        options = JobOptions(fields=UNIQUE_FIELDS if unique else PER_LINE_FIELDS, unique=unique)
        client = self.redis.client()
        settings = replace(self.settings, job_chunk_size=chunk_size)
        enqueue(client, settings, job_id, options, NAME, path.stat().st_size, None)
        client.close()
        return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json or {})

    def wait(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (state := self.status(job_id))["status"] not in {"finished", "failed", "canceled"}:
            assert time.monotonic() < deadline, f"job stuck: {state}\n{self.worker_logs()}"
            time.sleep(0.1)
        return state

    def digest(self, job_id: str, fmt: str) -> str:
        response = self.client.get(f"/api/v1/jobs/{job_id}/result?format={fmt}", buffered=False)
        assert response.status_code == 200
        try:
            return _digest(response.response)  # type: ignore[arg-type]
        finally:
            response.close()

    def worker_logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-4000:] for path in self.logs.iterdir())


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The matrix's log, plain and gzip, and the 2,000,000-line log, each in its own directory
    under the name the jobs give their rows."""
    made = {}
    for key, lines, compress in (
        ("plain", MATRIX_LINES, False),
        ("gzip", MATRIX_LINES, True),
        ("full", FULL_LINES, False),
    ):
        made[key] = write_log_file(tmp_path_factory.mktemp(key) / NAME, lines, compress)
    assert made["plain"].stat().st_size > 2 * CHUNK_SIZE  # several chunks
    return made


@pytest.fixture(scope="module")
def references(logs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("references")
    made: dict[tuple[str, bool], Reference] = {}

    def get(key: str, unique: bool) -> Reference:
        if (key, unique) not in made:
            formats = FORMATS if key != "full" else ("ndjson",)
            made[key, unique] = reference(logs[key], unique, formats, out)
        return made[key, unique]

    return get


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("fanout")
    server = RedisServer(tmp).start()
    env = _cli_env() | {
        "IPGEO_DATA_DIR": str(tmp / "data"),
        "IPGEO_REDIS_URL": server.url,
        "IPGEO_JOB_CHUNK_SIZE": str(CHUNK_SIZE),
        "IPGEO_JOB_PROGRESS_INTERVAL": "0.1",
        "IPGEO_JOB_RETRIES": "1",
    }
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("IPGEO_")})
    logs = tmp / "worker-logs"
    logs.mkdir()
    item = Cluster(server, env, settings, create_app(settings).test_client(), logs)
    try:
        yield item
    finally:
        item.scale(0)
        server.stop()


def _check_finished(
    cluster: Cluster, job_id: str, expected: Reference, formats: tuple[str, ...]
) -> dict[str, Any]:
    state = cluster.wait(job_id)
    assert state["status"] == "finished", state
    chunks = state["chunks"]
    assert chunks == {"total": chunks["total"], "done": chunks["total"], "running": 0, "queued": 0}
    summary = {key: value for key, value in state["summary"].items() if key != "seconds"}
    assert summary == expected.summary
    progress = state["progress"]
    assert progress["percent"] == 100.0
    assert progress["done"] == progress["total"] > 0
    assert progress["lines"] == summary["lines"]
    for fmt in formats:
        assert cluster.digest(job_id, fmt) == expected.digests[fmt], fmt
    job_dir = cluster.settings.data_dir / "jobs" / job_id
    assert sorted(path.name for path in job_dir.iterdir()) == ["result.ndjson"]
    return state


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("unique", [False, True], ids=["per-line", "unique"])
@pytest.mark.parametrize("source", ["plain", "gzip"])
def test_chunked_results_are_those_of_ipgeo_bulk(
    cluster: Cluster,
    logs: dict[str, Path],
    references: Any,
    workers: int,
    unique: bool,
    source: str,
) -> None:
    cluster.scale(workers)
    job_id = cluster.submit(logs[source], unique)
    state = _check_finished(cluster, job_id, references(source, unique), FORMATS)
    assert state["chunks"]["total"] >= 3


@pytest.mark.parametrize("workers", [1, 2])
def test_two_million_lines_per_line(
    cluster: Cluster, logs: dict[str, Path], references: Any, workers: int
) -> None:
    cluster.scale(workers)
    job_id = cluster.submit(logs["full"], unique=False)
    assert cluster.status(job_id)["chunks"] is None  # not cut yet
    running: list[int] = []
    pages: list[str] = []
    while (state := cluster.status(job_id))["status"] in {"queued", "started"}:
        if state["chunks"]:
            running.append(state["chunks"]["running"])
            assert state["progress"]["total"] == logs["full"].stat().st_size
            if not pages:  # the job page shows the same counts as it follows the job
                pages.append(cluster.client.get(f"/jobs/{job_id}").text)
                assert f"of {state['chunks']['total']} done" in pages[0]
        time.sleep(0.2)
    state = _check_finished(cluster, job_id, references("full", False), ("ndjson",))
    assert state["summary"]["lines"] == FULL_LINES
    assert state["chunks"]["total"] >= logs["full"].stat().st_size // CHUNK_SIZE
    assert max(running, default=0) <= workers


def test_two_million_lines_unique(cluster: Cluster, logs: dict[str, Path], references: Any) -> None:
    cluster.scale(2)
    job_id = cluster.submit(logs["full"], unique=True)
    _check_finished(cluster, job_id, references("full", True), ("ndjson",))


def _horse_of(worker: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The work-horse the worker forked for a job (waits until there is one)."""
    found: list[int] = []

    def busy() -> bool:
        found[:] = [child.pid for child in psutil.Process(worker.pid).children()]
        return bool(found)

    wait_until(busy, timeout, "a work-horse")
    return found[0]


def test_a_chunk_whose_worker_is_killed_runs_again_on_the_other(
    cluster: Cluster, logs: dict[str, Path], references: Any
) -> None:
    cluster.scale(2)
    job_id = cluster.submit(logs["plain"], unique=False, chunk_size=512 * 1024)  # ~50 chunks
    wait_until(lambda: (cluster.status(job_id)["chunks"] or {}).get("done"), 120, "chunks done")
    victim = cluster.workers.pop(0)
    horse = _horse_of(victim)
    os.kill(victim.pid, signal.SIGKILL)  # the worker; the kernel takes its horse with it
    victim.wait()
    wait_until(lambda: not psutil.pid_exists(horse) or _zombie(horse), 10, "the horse's end")
    state = _check_finished(cluster, job_id, references("plain", False), ("ndjson",))
    assert state["summary"]["lines"] == MATRIX_LINES
    assert f"{job_id}-chunk-" in "".join(
        path.read_text(errors="replace") for path in cluster.logs.iterdir()
    )


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancel_stops_every_chunk_and_leaves_no_chunk_file(
    cluster: Cluster, logs: dict[str, Path]
) -> None:
    cluster.scale(2)
    job_id = cluster.submit(logs["full"], unique=False)

    def two_running() -> bool:
        chunks = cluster.status(job_id)["chunks"] or {}
        return chunks.get("running") == 2 and chunks.get("queued", 0) > 0

    wait_until(two_running, 120, "two chunks running")
    asked = time.monotonic()
    response = cluster.client.delete(f"/api/v1/jobs/{job_id}", headers=_owner(cluster, job_id))
    assert response.status_code in (200, 202), response.text
    while (state := cluster.status(job_id))["status"] == "started":
        time.sleep(0.05)
    took = time.monotonic() - asked
    assert state["status"] == "canceled", state
    assert took < 2.0, f"canceling took {took:.1f} s"
    job_dir = cluster.settings.data_dir / "jobs" / job_id
    assert list(job_dir.iterdir()) == []  # no chunk input, output or partial file, no upload
    # Nothing runs on: the workers take the next job at once.
    after = cluster.submit(logs["plain"], unique=True)
    assert cluster.wait(after)["status"] == "finished"
    assert list(job_dir.iterdir()) == []


def _owner(cluster: Cluster, job_id: str) -> dict[str, str]:
    """Make the test the job's owner (jobs queued directly have none) and present the token."""
    token = new_owner_token()
    client = cluster.redis.client()
    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    job.meta["owner_hash"] = owner_hash(token)
    job.save_meta()  # type: ignore[no-untyped-call]
    client.close()
    return {"X-Job-Token": token}


def test_chunk_and_merge_jobs_are_not_the_users(cluster: Cluster, logs: dict[str, Path]) -> None:
    cluster.scale(1)
    response = cluster.client.post(
        "/api/v1/jobs?name=access.log&mode=unique", data=logs["plain"].read_bytes()
    )
    assert response.status_code == 202, response.text
    job = response.json or {}
    token = {"X-Job-Token": job["owner_token"]}
    assert cluster.wait(job["id"])["status"] == "finished"
    listed = cluster.client.get("/api/v1/jobs", headers=token).json or {}
    assert [item["id"] for item in listed["jobs"]] == [job["id"]]
    page = cluster.client.get("/jobs", headers=token)
    assert f"{job['id']}-" not in page.text
    for internal in (f"{job['id']}-chunk-000000", f"{job['id']}-merge"):
        assert cluster.client.get(f"/api/v1/jobs/{internal}").status_code == 404
        assert cluster.client.get(f"/jobs/{internal}").status_code == 404
        assert cluster.client.delete(f"/api/v1/jobs/{internal}", headers=token).status_code == 404
