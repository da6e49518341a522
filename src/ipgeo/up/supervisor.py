"""A small process supervisor: start children in order, prefix their logs, stop them together.

Only start-up messages and errors are relayed (prefixed) through this process; request logs
never are: they go to files, or to a descriptor handed straight to the child (``Child.stdout``).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")
ReadyCheck = Callable[[], bool]


class SupervisorError(RuntimeError):
    """A child could not be started or did not become ready."""


class Interrupted(SupervisorError):
    """A stop signal arrived while the children were starting."""


@dataclass
class Child:
    """One supervised program."""

    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: ReadyCheck | None = None
    # The signal that asks this program for a graceful stop (nginx: SIGQUIT).
    stop_signal: signal.Signals = signal.SIGTERM
    # Stops the process instead of ``stop_signal`` (e.g. the job worker's warm-then-cold stop).
    stop: Callable[[subprocess.Popen[bytes]], None] | None = field(default=None, repr=False)
    # Runs once the process is gone (removing sockets and temporary directories).
    cleanup: Callable[[], None] | None = field(default=None, repr=False)
    # A descriptor the program's stdout is handed to as is (nginx's access log with
    # `--access-log -`: our own stdout), so those lines never pass through us; stderr is
    # still relayed with the prefix. None: stdout and stderr are both relayed.
    stdout: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class Supervisor:
    """Run children until a signal arrives or one of them exits, then stop all of them."""

    def __init__(
        self,
        console: Console | None = None,
        ready_timeout: float = 30,
        stop_timeout: float = 10,
        state_file: Path | None = None,
    ) -> None:
        self.state_file = state_file
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.children: list[Child] = []
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._event = threading.Event()
        self._reason = ""
        self._threads: list[threading.Thread] = []
        self._width = 6

    def log(self, message: str, style: str = "bold") -> None:
        """Print a line of the supervisor itself."""
        self._emit("up", "bold white", message, style)

    def start(self, child: Child) -> None:
        """Start ``child`` and wait until it is ready (raises ``SupervisorError``)."""
        self._width = max(self._width, len(child.name))
        colour = COLOURS[len(self.children) % len(COLOURS)]
        env = dict(os.environ if child.env is None else child.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        relayed_stdout = child.stdout is None
        try:
            # A session of its own: Ctrl-C in the terminal reaches only us, and we stop the
            # children in order; killpg later removes anything a child left behind.
            child.process = subprocess.Popen(
                child.argv,
                env=env,
                cwd=child.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if relayed_stdout else child.stdout,
                stderr=subprocess.STDOUT if relayed_stdout else subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl
            )
        except OSError as exc:
            raise SupervisorError(f"{child.name}: cannot start {child.argv[0]}: {exc}") from exc
        self.children.append(child)
        relayed = child.process.stdout if relayed_stdout else child.process.stderr
        assert relayed is not None
        self._spawn(self._pump, child.name, colour, relayed)
        self._spawn(self._watch, child)
        self.log(f"started {child.name} (pid {child.process.pid}): {' '.join(child.argv)}")
        self._write_state()
        if child.ready is not None:
            self._wait_ready(child, child.ready)

    def handle_signals(self) -> None:
        """From now on SIGINT/SIGTERM end ``run`` (or an unfinished start) instead of us."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    @property
    def failed(self) -> bool:
        """True once a child has exited on its own."""
        return self._reason.startswith("exited")

    def run(self) -> int:
        """Block until SIGINT/SIGTERM or a child's exit; stop everything; return the exit code."""
        while not self._event.wait(0.5):
            pass
        self.log(f"stopping: {self._reason}")
        self.stop()
        return 1 if self.failed else 0

    def stop(self) -> None:
        """Stop the children gracefully in reverse start order, killing stragglers."""
        for child in reversed(self.children):
            self._stop_child(child)
        for thread in self._threads:
            thread.join(timeout=2)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        self.log("all processes stopped")

    def _write_state(self) -> None:
        """Record ``{name: pid}`` of the children (for tooling and tests)."""
        if self.state_file is None:
            return
        pids = {c.name: c.process.pid for c in self.children if c.process is not None}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "children": pids}))
        tmp.replace(self.state_file)

    def _stop_child(self, child: Child) -> None:
        proc = child.process
        if proc is None:
            return
        if proc.poll() is None and child.stop is not None:
            child.stop(proc)
        if proc.poll() is None:
            try:
                proc.send_signal(child.stop_signal)
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.log(f"{child.name} did not stop in {self.stop_timeout:g} s; killing it")
            except ProcessLookupError:
                pass
        # Workers of a killed master, or anything else left in the child's process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if child.cleanup is not None:
            child.cleanup()

    def _wait_ready(self, child: Child, ready: ReadyCheck) -> None:
        deadline = time.monotonic() + self.ready_timeout
        assert child.process is not None
        while time.monotonic() < deadline:
            if self._event.is_set() and not self.failed:
                raise Interrupted(self._reason)
            if child.process.poll() is not None:
                raise SupervisorError(
                    f"{child.name} exited with status {child.process.returncode} while starting"
                )
            if ready():
                self.log(f"{child.name} is ready")
                return
            time.sleep(0.1)
        raise SupervisorError(f"{child.name} was not ready after {self.ready_timeout:g} s")

    def _on_signal(self, signum: int, frame: object) -> None:
        self._finish(f"received {signal.Signals(signum).name}")

    def _finish(self, reason: str) -> None:
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    def _watch(self, child: Child) -> None:
        assert child.process is not None
        code = child.process.wait()
        self._finish(f"exited: {child.name} ended with status {code}")

    def _pump(self, name: str, colour: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._emit(name, colour, raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def _emit(self, name: str, colour: str, message: str, style: str = "") -> None:
        line = Text.assemble((f"{name:<{self._width}} | ", colour), (message, style))
        self.console.print(line)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if ``ipgeo up`` itself dies (even by SIGKILL), never orphaned."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def tcp_ready(host: str, port: int) -> ReadyCheck:
    """A check that passes once something accepts connections on ``host:port``."""

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def unix_ready(path: Path) -> ReadyCheck:
    """A check that passes once something accepts connections on the unix socket ``path``."""

    def check() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(str(path))
            except OSError:
                return False
            return True

    return check


def http_ready(host: str, port: int, path: str = "/healthz", tls: bool = False) -> ReadyCheck:
    """A check that passes once ``GET path`` answers 200 (the whole chain is serving).

    With ``tls`` it speaks HTTPS without verifying the certificate: the check connects to
    this machine, under a name the certificate need not carry.
    """

    def check() -> bool:
        conn: http.client.HTTPConnection
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, port, timeout=2, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", path, headers={"Host": "localhost"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    return check
