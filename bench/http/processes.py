"""Starting the processes of a configuration and stopping every one of them again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


class StartError(RuntimeError):
    """A configuration did not come up."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Started:
    """One process we started, in its own session (its workers share its process group)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals


@dataclass
class Stack:
    """The processes of one configuration; a context manager that always stops them."""

    workdir: Path
    env: dict[str, str]
    started: list[Started] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        stop_signal: signal.Signals = signal.SIGTERM,
        env: dict[str, str] | None = None,
    ) -> Started:
        """Start ``argv`` with its output in ``<workdir>/<name>.log``."""
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=self.workdir,
                start_new_session=True,
            )
        started = Started(name, proc, log, stop_signal)
        self.started.append(started)
        return started

    def wait_ready(self, url: str, timeout_s: float = 60) -> bytes:
        """Poll ``url`` until it answers 200 and return the body; fail if a process dies."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            for item in self.started:
                if item.proc.poll() is not None:
                    raise StartError(
                        f"{item.name} exited with status {item.proc.returncode}:\n{tail(item.log)}"
                    )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # loopback only
                    return bytes(answer.read())
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        logs = "\n".join(f"--- {item.name}:\n{tail(item.log)}" for item in self.started)
        raise StartError(f"{url} not ready after {timeout_s:g} s ({last_error})\n{logs}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each started process and its workers.

        Each started process leads its own process group; workers that already exited are
        not counted (Linux ``/proc``; empty elsewhere).
        """
        groups = {item.proc.pid: item.name for item in self.started}
        used = dict.fromkeys(groups.values(), 0.0)
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for entry in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = entry.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            name = groups.get(int(fields[2]))  # the process group
            if name is not None:
                used[name] += (int(fields[11]) + int(fields[12])) / ticks
        return used

    def stop(self, grace_s: float = 10) -> None:
        """Stop everything in reverse start order: the stop signal, then SIGKILL."""
        while self.started:
            item = self.started.pop()
            if item.proc.poll() is None:
                item.proc.send_signal(item.stop_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    item.proc.wait(timeout=grace_s)
            # Workers left behind (or a master that ignored us) share the process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(item.proc.pid, signal.SIGKILL)
            item.proc.wait()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
