"""Issue 16, item 4: a job's work is bounded (rows, decompressed input) and cancel is prompt.

Real processes: ``ipgeo serve``, redis-server and ``ipgeo worker``, with the bundled GeoLite2
database (one line ``0.0.0.0/0`` has a row per database network: millions).
"""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipgeo.jobs import queue
from ipgeo.settings import Settings
from tests.test_bulk_cli import bulk
from tests.test_jobs_acceptance import Stack

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

MAX_ROWS = 5000
MAX_INPUT = 500_000


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.start(
        tmp_path_factory.mktemp("bounded-jobs"),
        1,
        IPGEO_JOB_MAX_ROWS=str(MAX_ROWS),
        IPGEO_JOB_MAX_INPUT=str(MAX_INPUT),
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def unbounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.start(tmp_path_factory.mktemp("default-jobs"), 1)
    yield stack
    stack.stop()


def _files(stack: Stack, job_id: str) -> list[str]:
    job_dir = stack.job_dir(job_id)
    return sorted(item.name for item in job_dir.iterdir()) if job_dir.exists() else []


def test_one_cidr_line_stops_at_the_row_bound(bounded: Stack, tmp_path: Path) -> None:
    upload = tmp_path / "world.txt"
    upload.write_text("0.0.0.0/0\n")
    job = bounded.submit(upload)
    state = bounded.wait_for(job["id"], {"finished", "failed", "canceled"})
    assert state["status"] == "failed", state
    assert state["error"]["code"] == "too_large", state
    assert "IPGEO_JOB_MAX_ROWS" in state["error"]["message"]
    assert f"{MAX_ROWS:,}" in state["error"]["message"]
    assert not [name for name in _files(bounded, job["id"]) if name.startswith("result")]


def test_a_gzip_bomb_stops_at_the_input_bound(bounded: Stack, tmp_path: Path) -> None:
    upload = tmp_path / "bomb.txt.gz"
    upload.write_bytes(gzip.compress(b"8.8.8.8\n" * 1_000_000, 9))
    assert upload.stat().st_size < 20_000
    job = bounded.submit(upload)
    state = bounded.wait_for(job["id"], {"finished", "failed", "canceled"})
    assert state["status"] == "failed", state
    assert state["error"]["code"] == "too_large", state
    assert "IPGEO_JOB_MAX_INPUT" in state["error"]["message"]
    assert not [name for name in _files(bounded, job["id"]) if name.startswith("result")]


def test_a_small_job_is_within_the_bounds(bounded: Stack, tmp_path: Path) -> None:
    upload = tmp_path / "few.txt"
    upload.write_text("8.8.8.8\n1.1.1.1\n192.0.2.0/30\n")
    job = bounded.submit(upload)
    state = bounded.wait_for(job["id"], {"finished", "failed", "canceled"})
    assert state["status"] == "finished", state
    assert state["summary"]["rows"] == 3


def test_cancel_stops_a_job_inside_one_huge_cidr(unbounded: Stack, tmp_path: Path) -> None:
    upload = tmp_path / "worlds.txt"
    # one batch of lines: the engine used to look for a cancel only after all of them
    upload.write_text("0.0.0.0/0\n::/0\n" * 20)
    job = unbounded.submit(upload)
    job_id = job["id"]
    deadline = time.monotonic() + 60
    while not _writing(unbounded.job_dir(job_id), 1_000_000):  # its chunk's partial output
        assert time.monotonic() < deadline, unbounded.worker_log()
        time.sleep(0.02)
    settings = Settings.from_env(unbounded.env)
    connection = unbounded.redis.client()
    try:
        assert queue.cancel(connection, settings, queue.fetch_job(connection, job_id)) == "started"
    finally:
        connection.close()
    asked = time.monotonic()
    state = unbounded.wait_for(job_id, {"finished", "failed", "canceled"}, timeout=30)
    took = time.monotonic() - asked
    assert state["status"] == "canceled", state
    assert _files(unbounded, job_id) == []
    # the whole input is about 40 times the 10,000,000 rows that would end it as too large
    assert took < 5, took


def _writing(job_dir: Path, size: int) -> bool:
    """Whether a partial output of the job has grown past ``size`` bytes."""
    for path in job_dir.rglob("*.partial"):
        try:
            if path.stat().st_size > size:
                return True
        except FileNotFoundError:
            continue
    return False


def test_the_cli_takes_the_row_bound_when_asked(tmp_path: Path) -> None:
    world = tmp_path / "world.txt"
    world.write_text("0.0.0.0/0\n")
    out = tmp_path / "out.csv"
    result = bulk("--max-rows", "100", "-o", str(out), str(world))
    assert result.returncode == 1
    assert b"more than 100 rows (--max-rows 100)" in result.stderr
    assert not out.exists() and not out.with_name("out.csv.partial").exists()
    few = tmp_path / "few.txt"
    few.write_text("8.8.8.8\n192.0.2.0/30\n")
    assert bulk("--max-rows", "2", "-o", str(out), str(few)).returncode == 0
    assert len(out.read_text().splitlines()) == 3  # header and two rows
