"""The RQ worker for bulk jobs (``ipgeo worker``), and starting one as a child process."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

import redis
from rq import Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from ipgeo.geo import GeoService
from ipgeo.jobs import task
from ipgeo.jobs.files import JobFiles
from ipgeo.jobs.queue import Cleaner, bulk_queue, retry_abandoned
from ipgeo.jobs.shared_dir import data_dir_problem
from ipgeo.settings import Settings

log = logging.getLogger("ipgeo.jobs")

# While a worker cannot see the job files, it looks again this often (seconds).
SHARED_DIR_RECHECK = 5.0
# A busy worker's heartbeat comes this often, and a job whose heartbeats stopped this much
# longer is abandoned (its worker died): retried on another worker or failed. RQ's defaults
# (30 s + 60 s) would leave a job's other chunks merged only minutes after a worker died.
JOB_MONITORING_INTERVAL = 5
HEARTBEAT_GRACE = 15
# An idle worker wakes this often to look for abandoned jobs (RQ: the worker TTL, minutes).
IDLE_WAKE_UP = 10
# An idle worker asked to stop (or one whose job ended after the request) notes its death in
# Redis and unsubscribes. A Redis that is gone (stopped first, its container's name or address
# vanished) leaves those calls waiting on name look-ups and connections, and RQ's stop request
# can be lost (raised from the signal handler, it is swallowed when it lands in a log call).
# Past this many seconds the worker exits all the same (its key in Redis expires).
STOP_LIMIT = 3.0


class JobsUnavailable(RuntimeError):
    """Background jobs need a Redis (``IPGEO_REDIS_URL``)."""


class BulkWorker(Worker):
    """A forking RQ worker that also ends cooperatively canceled jobs as ``canceled``,
    drops the half-written output of a killed work-horse and removes expired job files.

    Its work-horse never outlives it, and it stops cold when the process that started it
    (``ipgeo up``, ``ipgeo serve``) dies.
    """

    cleaner: Cleaner | None = None
    # The process that started this worker; a parent-death signal from it means it is gone.
    started_by: int | None = None
    # The data directory whose job files it must see before it takes a job (None: no check).
    data_dir: Path | None = None
    blind_reason: str | None = None
    _stop_deadline: threading.Timer | None = None

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Take a job only while this worker sees the web app's job files (else wait)."""
        while True:
            if not self.sees_job_files():
                if timeout is None:  # burst: nothing it could do
                    return None
                self.heartbeat()
                time.sleep(SHARED_DIR_RECHECK)
                continue
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if result is None or self.sees_job_files():
                return result
            job, queue = result  # it lost sight of the files while it waited: hand it back
            queue.intermediate_queue.remove(job.id)
            queue.push_job_id(job.id, at_front=True)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; one of its own (an idle worker's, every ``IDLE_WAKE_UP`` s) also
        looks for the jobs of dead workers."""
        super().heartbeat(timeout, pipeline)
        if pipeline is None:
            self.retry_abandoned()

    def retry_abandoned(self) -> None:
        """Retry (or fail) the jobs of dead workers: started ones whose heartbeats stopped,
        and ones a worker took off the queue but died before starting (RQ looks for those only
        in its maintenance, every ten minutes; it leaves them a minute to start)."""
        retry_abandoned(self.connection)
        for queue in self.queues:
            if queue.acquire_maintenance_lock():  # one worker at a time, as RQ's maintenance
                try:
                    queue.intermediate_queue.cleanup(self, queue)
                finally:
                    queue.release_maintenance_lock()  # type: ignore[no-untyped-call]

    @property
    def dequeue_timeout(self) -> int:
        """How long an idle worker waits for a job before it looks around again (seconds)."""
        return IDLE_WAKE_UP

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long a running job stays ``started`` without a heartbeat of its worker."""
        ttl = super().get_heartbeat_ttl(job, working_time)
        return min(int(ttl), int(self.job_monitoring_interval) + HEARTBEAT_GRACE)

    def sees_job_files(self) -> bool:
        """Whether the job files are visible here; says so in the log when that changes."""
        if self.data_dir is None:
            return True
        try:
            reason = data_dir_problem(self.connection, self.data_dir)
        except redis.RedisError:
            return True  # RQ's own dequeue reports and retries Redis failures
        if reason != self.blind_reason:
            if reason is not None:
                self.log.error("Worker %s: %s", self.name, reason)
            else:
                self.log.info("Worker %s: it sees the job files in %s", self.name, self.data_dir)
        self.blind_reason = reason
        return reason is None

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """In the forked horse: die with the worker, even when the worker is SIGKILLed."""
        # RQ puts the horse in a process group of its own, so nothing that stops the worker
        # (SIGKILL, killpg of its group) reaches it; the kernel's parent-death signal does.
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self.pid:  # the worker died before the signal was armed
            os._exit(1)
        super().main_work_horse(job, queue)

    def teardown(self) -> None:
        """RQ's teardown (the worker's death noted in Redis, unsubscribing) within
        ``STOP_LIMIT`` seconds; past them the worker exits at once."""
        self._exit_unless_stopped_within(STOP_LIMIT)
        try:
            super().teardown()  # type: ignore[no-untyped-call]
        finally:
            if self._stop_deadline is not None:
                self._stop_deadline.cancel()
                self._stop_deadline = None

    def _exit_unless_stopped_within(self, seconds: float) -> None:
        if self._stop_deadline is None:
            self._stop_deadline = threading.Timer(seconds, self._exit_now)
            self._stop_deadline.daemon = True
            self._stop_deadline.start()

    def _exit_now(self) -> None:
        self.log.warning(
            "Worker %s: not stopped %s s after the request (Redis gone?): exiting",
            self.name,
            STOP_LIMIT,
        )
        logging.shutdown()  # flushes the log
        os._exit(1)

    def unsubscribe(self) -> None:
        """Stop listening for RQ's commands (its pub/sub thread) within a second."""
        thread = self.pubsub_thread
        if thread is None or self.pubsub is None:
            return
        # RQ unsubscribes, then stops the thread, whose stop() (redis-py ≥ 8) waits for it. If
        # the thread has read the unsubscribe reply first, it sleeps in get_message for the
        # 60 s RQ gives it, and so did the worker's warm shutdown. Clearing the thread's flag
        # first (stop() with no wait) makes that reply the thread's last.
        channel = self.pubsub_channel_name
        self.log.info("Worker %s: unsubscribing from channel %s", self.name, channel)
        thread.stop(timeout=0)
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown, or a cold one once the process that started the worker is gone; an
        idle worker is gone within ``STOP_LIMIT`` seconds."""
        if self._starter_gone():
            self._stop_cold()
        if self.get_state() != WorkerStatus.BUSY:
            self._exit_unless_stopped_within(STOP_LIMIT)
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """Cold shutdown (RQ ignores a second signal within a second; not if the starter died)."""
        if self._starter_gone():
            self._stop_cold()
        super().request_force_stop(signum, frame)

    def _starter_gone(self) -> bool:
        # The parent-death signal of ``ipgeo up``/``serve`` is a SIGTERM like any other; that
        # the worker has been reparented tells it apart. No one is left to wait for the job.
        return self.started_by is not None and os.getppid() != self.started_by

    def _stop_cold(self) -> None:
        self.log.warning("Worker %s: the process that started it died: cold shut down", self.name)
        if self.horse_pid:
            self.kill_horse()
            self.wait_for_horse()
        raise SystemExit(1)

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
        job_monitoring_interval=JOB_MONITORING_INTERVAL,
    )
    worker.cleaner = cleaner
    worker.data_dir = settings.data_dir
    if parent_death_signal():
        worker.started_by = os.getppid()
    cleaner.run(connection)
    return bool(worker.work(burst=burst, logging_level="INFO"))


_PR_SET_PDEATHSIG, _PR_GET_PDEATHSIG = 1, 2
# Loaded before any fork: looking up a symbol in a forked child can deadlock on loader locks.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def set_parent_death_signal(signum: int) -> None:
    """Have Linux send ``signum`` to this process when its parent dies (PR_SET_PDEATHSIG)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signum)


def parent_death_signal() -> int:
    """The signal this process gets when its parent dies; 0 when none (PR_GET_PDEATHSIG)."""
    if _libc is None:
        return 0
    value = ctypes.c_int(0)
    _libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(value))
    return value.value


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this child when its parent dies (PR_SET_PDEATHSIG)."""
    set_parent_death_signal(signal.SIGTERM)


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

    The worker gets SIGTERM if the starting process dies without stopping it, and then stops
    cold (its running job is killed; see ``BulkWorker.request_stop``).
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
