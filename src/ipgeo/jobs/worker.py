"""The RQ worker for bulk jobs (``ipgeo worker``), and starting one as a child process."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import redis
from rq import Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from ipgeo.geo import GeoService
from ipgeo.jobs import task
from ipgeo.jobs.files import JobFiles
from ipgeo.jobs.queue import Cleaner, bulk_queue
from ipgeo.settings import Settings

log = logging.getLogger("ipgeo.jobs")


class JobsUnavailable(RuntimeError):
    """Background jobs need a Redis (``IPGEO_REDIS_URL``)."""


class BulkWorker(Worker):
    """A forking RQ worker that also ends cooperatively canceled jobs as ``canceled``,
    drops the half-written output of a killed work-horse and removes expired job files."""

    cleaner: Cleaner | None = None

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """Record success, then file a job that stopped on request as canceled."""
        super().handle_job_success(job, queue, *args, **kwargs)
        if job.meta.get("state") == "canceled":
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        """The horse died mid-job: its ``.partial`` output is garbage."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]
        if job.args:
            JobFiles(Path(str(job.args[0]))).remove_partial()

    def run_maintenance_tasks(self) -> None:
        """RQ's registry clean-up, plus removing the files of expired jobs."""
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        if self.cleaner is not None:
            try:
                self.cleaner.run(self.connection)
            except (OSError, redis.RedisError) as exc:
                log.warning("cleaning up expired job files failed: %s", exc)


def worker_connection(url: str) -> redis.Redis:
    """A Redis connection for a worker (RQ manages its blocking timeouts itself)."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def run_worker(
    settings: Settings,
    service: GeoService,
    burst: bool = False,
    name: str | None = None,
    maintenance_interval: int = 600,
) -> bool:
    """Work on the ``bulk`` queue until stopped (or, with ``burst``, until it is empty)."""
    if not settings.redis_url:
        raise JobsUnavailable(
            "IPGEO_REDIS_URL is unset: a worker needs the Redis the web app uses "
            "(`ipgeo serve` starts its own worker when it runs the embedded Redis)"
        )
    task.configure(settings, service)
    connection = worker_connection(settings.redis_url)
    cleaner = Cleaner(settings.data_dir)
    worker = BulkWorker(
        [bulk_queue(connection)],
        connection=connection,
        serializer=JSONSerializer,
        name=name,
        maintenance_interval=maintenance_interval,
    )
    worker.cleaner = cleaner
    cleaner.run(connection)
    return bool(worker.work(burst=burst, logging_level="INFO"))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this child when its parent dies (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def worker_command(name: str | None = None) -> list[str]:
    """The command line of ``ipgeo worker`` in this Python environment."""
    argv = [sys.executable, "-m", "ipgeo", "worker"]
    return [*argv, "--name", name] if name else argv


def worker_environment(redis_url: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process on ``redis_url``."""
    return {**os.environ, **(env or {}), "IPGEO_REDIS_URL": redis_url}


def worker_registered(redis_url: str, name: str) -> bool:
    """Whether the worker ``name`` has registered itself in Redis (it is ready for jobs)."""
    connection = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5)
    try:
        return bool(connection.exists(Worker.redis_worker_namespace_prefix + name))
    except redis.RedisError:
        return False
    finally:
        connection.close()


def start_worker_process(
    redis_url: str,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | None = None,
    name: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``ipgeo worker`` as a child process on ``redis_url`` (stop it with ``stop_worker``).

    The worker gets SIGTERM (a warm shutdown) if the starting process dies without stopping it.
    ``ipgeo up`` passes ``output`` (a pipe it prefixes) and a ``name`` to check readiness.
    """
    return subprocess.Popen(
        worker_command(name),
        env=worker_environment(redis_url, env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        # Its own session: Ctrl-C reaches the parent, which stops the worker before Redis.
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads run yet where it is used)
    )


def stop_worker(process: subprocess.Popen[bytes], owner: int, timeout: float = 5.0) -> None:
    """Warm shutdown (the current job may finish), then a cold one, then SIGKILL.

    Only process ``owner`` (the one that started it) stops it: forked server workers inherit
    the handle, and their exit must not stop the job worker.
    """
    if os.getpid() != owner:
        return
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
