"""Workers on many machines: a worker that cannot see the web app's job files takes no jobs.

Real redis-server and real `ipgeo worker` processes; two data directories stand for two
machines without a shared volume.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from ipgeo.jobs import JobFiles, JobOptions, enqueue, ensure_marker, new_job_id
from ipgeo.jobs.queue import bulk_queue
from ipgeo.jobs.shared_dir import MARKER_KEY, data_dir_problem, markers_dir
from ipgeo.jobs.worker import start_worker_process, stop_worker
from ipgeo.settings import Settings
from tests.servers import RedisServer, wait_until

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

BLIND = "cannot see the job files of the web app"


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _env(redis_server: RedisServer, data_dir: Path) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    return environ | {
        "IPGEO_DATA_DIR": str(data_dir),
        "IPGEO_DNS_SERVERS": "127.0.0.1:9",
        "IPGEO_REDIS_URL": redis_server.url,
    }


def _settings(env: dict[str, str]) -> Settings:
    return Settings.from_env({k: v for k, v in env.items() if k.startswith("IPGEO_")})


def _submit(client: redis.Redis, settings: Settings) -> str:
    """What the web app does: store the upload, then queue the job."""
    ensure_marker(client, settings.data_dir)
    job_id = new_job_id()
    files = JobFiles.of(settings.data_dir, job_id)
    files.directory.mkdir(parents=True)
    files.input.write_bytes(b"8.8.8.8\n81.2.69.142\n")
    enqueue(client, settings, job_id, JobOptions(), "ips.txt", 20, None)
    return job_id


def _status(client: redis.Redis, job_id: str) -> str:
    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    return str(job.get_status().value)


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipgeo", "healthcheck", "--worker"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_a_worker_without_the_shared_directory_says_so_and_takes_no_jobs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    env, other_env = _env(redis_server, shared), _env(redis_server, elsewhere)
    client = redis_server.client()
    # A worker started before any web app names its own directory's marker.
    first = start_worker_process(redis_server.url, env, (tmp_path / "first.log").open("wb"))
    blind: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: client.get(MARKER_KEY), 60, "the first worker's marker")
        token = client.get(MARKER_KEY)
        assert token is not None and (markers_dir(shared) / token.decode()).is_file()
        # The web app on the same volume keeps it.
        ensure_marker(client, shared)
        assert client.get(MARKER_KEY) == token
        assert _healthcheck(env).returncode == 0

        # A worker on a "machine" with another data directory: it says why and takes nothing.
        blind_log = tmp_path / "blind.log"
        blind = start_worker_process(redis_server.url, other_env, blind_log.open("wb"))
        wait_until(lambda: BLIND in blind_log.read_text(), 60, "the blind worker's complaint")
        assert blind.poll() is None  # it waits, it does not crash-loop
        assert str(elsewhere) in blind_log.read_text()
        assert "shared volume" in blind_log.read_text()
        check = _healthcheck(other_env)
        assert check.returncode != 0
        assert BLIND in check.stderr

        stop_worker(first, os.getpid())
        job_id = _submit(client, _settings(env))
        # A burst worker of the other directory looks once, takes nothing and ends.
        burst = subprocess.run(
            [sys.executable, "-m", "ipgeo", "worker", "--burst"],
            env=other_env, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert burst.returncode == 0, burst.stderr
        assert BLIND in burst.stdout + burst.stderr
        assert _status(client, job_id) == "queued"
        assert not (elsewhere / "jobs" / job_id).exists()

        # Once it sees the shared directory (the volume is mounted), the waiting worker works.
        shutil.rmtree(elsewhere / "jobs", ignore_errors=True)
        elsewhere.mkdir(exist_ok=True)
        (elsewhere / "jobs").symlink_to(shared / "jobs")
        wait_until(lambda: _status(client, job_id) == "finished", 60, "the job, healed worker")
        assert "it sees the job files" in blind_log.read_text()
    finally:
        stop_worker(first, os.getpid())
        if blind is not None:
            stop_worker(blind, os.getpid())
        client.close()


def test_the_web_app_names_its_directory_when_a_worker_named_another(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    worker_dir, app_dir = tmp_path / "worker", tmp_path / "app"
    assert data_dir_problem(client, worker_dir) is None  # the first one names its own
    worker_token = client.get(MARKER_KEY)
    ensure_marker(client, app_dir)  # the app does not see it: the app's directory counts
    assert client.get(MARKER_KEY) != worker_token
    problem = data_dir_problem(client, worker_dir)
    assert problem is not None and BLIND in problem and str(worker_dir) in problem
    assert data_dir_problem(client, app_dir) is None
    client.close()


def test_a_job_taken_by_a_worker_that_died_before_starting_it_runs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A job a worker took off the queue but never started (it died in between: the job sits
    in RQ's intermediate list) is run again at a live worker's next look (every 10 s when
    idle), not at RQ's maintenance ten minutes later."""
    env = _env(redis_server, tmp_path / "shared")
    client = redis_server.client()
    job_id = _submit(client, _settings(env))
    queue = bulk_queue(client)
    assert client.lmove(queue.key, queue.intermediate_queue_key) == job_id.encode()
    first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
    client.set(first_seen, time.time())  # just taken: RQ leaves it a minute to start
    log = tmp_path / "worker.log"
    worker = start_worker_process(redis_server.url, env, log.open("wb"))
    try:
        wait_until(lambda: "Listening on bulk" in log.read_text(), 60, "the worker's start")
        assert _status(client, job_id) == "queued"  # its start-up maintenance left it
        client.set(first_seen, time.time() - 120)  # ... and two minutes pass
        wait_until(lambda: _status(client, job_id) == "finished", 60, "the job, run again")
    finally:
        stop_worker(worker, os.getpid())
        client.close()
