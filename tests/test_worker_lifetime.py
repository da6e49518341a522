"""A job worker's work-horse never outlives it: real redis-server, `ipgeo worker`, work-horse.

The job's input is a named pipe: the horse runs the job (it has opened its input) for as long
as the test keeps the pipe open, so nothing here depends on how fast a job runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from ipgeo.jobs import JobFiles, JobOptions, enqueue, new_job_id
from ipgeo.jobs.queue import bulk_queue
from ipgeo.jobs.worker import (
    STOP_LIMIT,
    BulkWorker,
    start_worker_process,
    worker_connection,
    worker_registered,
)
from ipgeo.settings import Settings
from tests.conftest import free_port
from tests.servers import RedisServer, wait_until
from tests.upctl import UpProcess

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

# Starts a worker the way `ipgeo up` and `ipgeo serve` do, then just waits.
STARTER = """
import sys
from ipgeo.jobs.worker import start_worker_process
worker = start_worker_process(sys.argv[1])
print(worker.pid, flush=True)
worker.wait()
"""


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture()
def env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    return environ | {
        "IPGEO_DATA_DIR": str(tmp_path / "data"),
        "IPGEO_DNS_SERVERS": "127.0.0.1:9",
        "IPGEO_REDIS_URL": redis_server.url,
    }


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _enqueue_endless_job(redis_server: RedisServer, env: dict[str, str]) -> tuple[str, Path]:
    """Queue a job whose input is a named pipe nobody writes to yet."""
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("IPGEO_")})
    job_id = new_job_id()
    files = JobFiles.of(settings.data_dir, job_id)
    files.directory.mkdir(parents=True)
    os.mkfifo(files.input)
    client = redis_server.client()
    enqueue(client, settings, job_id, JobOptions(), "endless.log", 0, None)
    client.close()
    return job_id, files.input


def _open_once_read(fifo: Path, worker: int) -> int:
    """The pipe's write end, once a horse has opened the read end (it runs the job)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        assert _running(worker), "the worker exited"
        assert time.monotonic() < deadline, "no work-horse opened the job's input"
        time.sleep(0.05)


@pytest.mark.parametrize("kill", ["worker", "worker's group", "starter"])
def test_work_horse_dies_with_its_worker(
    kill: str, redis_server: RedisServer, env: dict[str, str]
) -> None:
    """SIGKILL of the worker or its group (supervisord's killasgroup, `up`'s clean-up), or of
    the process that started it (`ipgeo up`, `ipgeo serve`): no process is left behind."""
    job_id, fifo = _enqueue_endless_job(redis_server, env)
    starter: subprocess.Popen[str] | None = None
    worker: subprocess.Popen[bytes] | None = None
    pids: list[int] = []
    writer = -1
    try:
        if kill == "starter":
            starter = subprocess.Popen(
                [sys.executable, "-c", STARTER, redis_server.url],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert starter.stdout is not None
            pids += [starter.pid, int(starter.stdout.readline())]
        else:
            worker = start_worker_process(redis_server.url, env)
            pids.append(worker.pid)
        worker_pid = pids[-1]
        writer = _open_once_read(fifo, worker_pid)
        os.write(writer, b"81.2.69.142\n8.8.8.8\n")
        [horse] = psutil.Process(worker_pid).children()
        pids.append(horse.pid)
        assert os.getpgid(horse.pid) != os.getpgid(worker_pid)  # RQ's own group for the horse
        job = Job.fetch(job_id, connection=redis_server.client(), serializer=JSONSerializer)
        assert job.get_status() == "started"
        watched = [psutil.Process(pid) for pid in pids[-2:]]  # the worker and its horse

        if kill == "worker":
            os.kill(worker_pid, signal.SIGKILL)
        elif kill == "worker's group":
            os.killpg(worker_pid, signal.SIGKILL)
        else:
            assert starter is not None
            starter.kill()
            starter.wait()

        _gone, alive = psutil.wait_procs(watched, timeout=15)
        left = [proc.pid for proc in alive if _running(proc.pid)]
        assert left == [], f"left behind: {left} (worker {worker_pid}, horse {horse.pid})"
    finally:
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        for child in (starter, worker):
            if child is not None:
                child.wait()
        if writer >= 0:
            os.close(writer)


def test_killing_ipgeo_up_mid_job_leaves_no_process(
    tmp_path: Path, redis_server: RedisServer, env: dict[str, str]
) -> None:
    """`ipgeo up` SIGKILLed while its worker runs a job (on a Redis that outlives it)."""
    _job_id, fifo = _enqueue_endless_job(redis_server, env)
    settings = {key: value for key, value in env.items() if key.startswith("IPGEO_")}
    up = UpProcess(Path(env["IPGEO_DATA_DIR"]), free_port(), "--no-nginx", **settings)
    processes: list[psutil.Process] = []
    writer = -1
    try:
        up.wait_ready()
        writer = _open_once_read(fifo, up.children()["worker"])
        processes = up.descendants()
        assert len(processes) > 2, processes  # the worker, its horse, the WSGI server
        up.proc.kill()
        up.proc.wait()
        _gone, alive = psutil.wait_procs(processes, timeout=20)
        left = [proc for proc in alive if _running(proc.pid)]
        assert left == [], f"left behind: {left}\n{up.output()[-3000:]}"
    finally:
        for proc in processes:
            if _running(proc.pid):
                proc.kill()
        up.kill_all()
        if writer >= 0:
            os.close(writer)


def test_idle_workers_stop_within_seconds_of_sigterm_after_jobs(
    redis_server: RedisServer, env: dict[str, str]
) -> None:
    """Warm shutdown of idle workers that have run jobs. RQ's pub/sub thread (redis-py 8.2)
    could hold it for the minute it sleeps between reads; the container stop timed out."""
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("IPGEO_")})
    workers = [start_worker_process(redis_server.url, env) for _ in range(4)]
    client = redis_server.client()
    try:
        job_ids = []
        for _ in range(12):
            job_id = new_job_id()
            files = JobFiles.of(settings.data_dir, job_id)
            files.directory.mkdir(parents=True)
            files.input.write_bytes(b"81.2.69.142\n8.8.8.8\n")
            enqueue(client, settings, job_id, JobOptions(), "two.log", 20, None)
            job_ids.append(job_id)
        deadline = time.monotonic() + 60
        for job_id in job_ids:
            job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
            while job.get_status() != "finished":
                assert time.monotonic() < deadline, f"job {job_id}: {job.get_status()}"
                time.sleep(0.05)
        time.sleep(1)  # idle
        for worker in workers:
            worker.terminate()
        begun = time.monotonic()
        took = []
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(max(0.1, begun + 5 - time.monotonic()))
            took.append(round(time.monotonic() - begun, 1) if worker.poll() is not None else None)
        assert None not in took, f"seconds to stop (None: still running after 5 s): {took}"
    finally:
        client.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def test_unsubscribing_is_prompt_when_the_thread_reads_the_reply_first(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving behind the slow stops above, made certain: the worker's pub/sub thread
    handles the unsubscribe reply before the worker goes on (as when its main thread is
    descheduled right after sending it)."""
    connection = worker_connection(redis_server.url)
    worker = BulkWorker([bulk_queue(connection)], connection=connection, serializer=JSONSerializer)
    worker.subscribe()
    pubsub = worker.pubsub
    assert pubsub is not None
    send_unsubscribe = pubsub.unsubscribe

    def unsubscribe_then_wait_for_the_reply(*args: Any) -> None:
        send_unsubscribe(*args)
        deadline = time.monotonic() + 5
        while pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the thread is back in get_message

    monkeypatch.setattr(pubsub, "unsubscribe", unsubscribe_then_wait_for_the_reply)
    begun = time.monotonic()
    worker.unsubscribe()
    took = time.monotonic() - begun
    connection.close()
    assert worker.pubsub_thread is not None and not worker.pubsub_thread.is_alive()
    assert took < 2, f"unsubscribing took {took:.1f} s"


class _SilencedLink:
    """A TCP link to a real Redis that can fall silent: from ``silence()`` on, connections
    are taken and bytes read, but nothing reaches either side (a Redis whose container
    vanished: connections that never answer)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.silent = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.silent.is_set():
                threading.Thread(target=self._pipe, args=(client, None), daemon=True).start()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets.append(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket | None) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    return
                if target is not None and not self.silent.is_set():
                    target.sendall(data)
            except OSError:
                return


def test_a_worker_whose_redis_fell_silent_stops_within_seconds(
    redis_server: RedisServer, env: dict[str, str]
) -> None:
    """SIGTERM after Redis stopped answering (its container went first): the worker cannot
    note its death there and exits after ``STOP_LIMIT`` s instead of waiting forever."""
    link = _SilencedLink(redis_server.port)
    worker = start_worker_process(f"redis://127.0.0.1:{link.port}/0", env, name="silenced")
    try:
        wait_until(lambda: worker_registered(redis_server.url, "silenced"), 30, "the worker")
        link.silence()
        time.sleep(0.5)
        worker.terminate()
        begun = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(STOP_LIMIT + 5)
        took = time.monotonic() - begun
        assert worker.poll() is not None, f"still running {took:.1f} s after SIGTERM"
        assert took < STOP_LIMIT + 2
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        link.close()


# A worker whose stop request is swallowed (RQ raises it from the signal handler; a log call
# it lands in catches it), then waits as if it had not been asked: as a Redis retry loop would.
SWALLOWED_STOP = """
import signal, sys, time
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer
from ipgeo.jobs.queue import bulk_queue
from ipgeo.jobs.worker import BulkWorker, worker_connection
connection = worker_connection(sys.argv[1])
worker = BulkWorker([bulk_queue(connection)], connection=connection, serializer=JSONSerializer)
worker.set_state("idle")
try:
    worker.request_stop(signal.SIGTERM, None)
except StopRequested:
    print("swallowed", flush=True)
time.sleep(30)
"""


def test_an_idle_worker_whose_stop_request_is_lost_exits_within_the_limit(
    redis_server: RedisServer, env: dict[str, str]
) -> None:
    begun = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SWALLOWED_STOP, redis_server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    took = time.monotonic() - begun
    assert done.stdout.strip() == "swallowed", done.stderr
    assert done.returncode == 1, done.stderr
    assert "exiting" in done.stderr
    assert took < STOP_LIMIT + 5
