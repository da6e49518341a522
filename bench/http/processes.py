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


class ConfigUnavailable(StartError):
    """A configuration cannot run on this machine (e.g. a peer that cannot be built): skipped."""


@dataclass(frozen=True)
class ReadyAnswer:
    """The first 200 answer of a configuration's lookup path."""

    body: bytes
    headers: dict[str, str]


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
    grace_s: float = 10  # how long it may take to stop before its group is killed


@dataclass(frozen=True)
class Adopted:
    """A process group a started process started in turn (a supervisor's child programs)."""

    name: str
    pgid: int
    leader_start: int  # the leader's start time (clock ticks): a recycled pid is never signalled


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (``[0]`` is the state)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone meanwhile


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


@dataclass
class Stack:
    """The processes of one configuration; a context manager that always stops them."""

    workdir: Path
    env: dict[str, str]
    started: list[Started] = field(default_factory=list)
    adopted: list[Adopted] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        stop_signal: signal.Signals = signal.SIGTERM,
        env: dict[str, str] | None = None,
        grace_s: float = 10,
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
        started = Started(name, proc, log, stop_signal, grace_s)
        self.started.append(started)
        return started

    def adopt(self, name: str, pid: int) -> None:
        """Count (and stop, if left behind) the process group led by ``pid`` as ``name``."""
        start = _start_time(pid)
        if start is None:
            raise StartError(f"{name} (pid {pid}) is not running")
        self.adopted.append(Adopted(name, pid, start))

    def wait_ready(self, url: str, timeout_s: float = 60) -> ReadyAnswer:
        """Poll ``url`` until it answers 200 and return the answer; fail if a process dies."""
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
                    return ReadyAnswer(bytes(answer.read()), dict(answer.headers.items()))
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        logs = "\n".join(f"--- {item.name}:\n{tail(item.log)}" for item in self.started)
        raise StartError(f"{url} not ready after {timeout_s:g} s ({last_error})\n{logs}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each started or adopted process group.

        Each started process leads its own process group, and so does each adopted one.
        Workers that exited count once their parent has reaped them (their time is then in
        the parent's children's times). Linux ``/proc``; empty elsewhere.
        """
        groups = {item.proc.pid: item.name for item in self.started}
        groups |= {item.pgid: item.name for item in self.adopted}
        used = dict.fromkeys(groups.values(), 0.0)
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for entry in Path("/proc").glob("[0-9]*"):
            fields = _stat_fields(entry.name)
            if fields is None:
                continue
            name = groups.get(int(fields[2]))  # the process group
            if name is not None:
                # utime + stime, and cutime + cstime: the reaped children's
                used[name] += sum(int(value) for value in fields[11:15]) / ticks
        return used

    def stop(self) -> None:
        """Stop everything in reverse start order: the stop signal, then SIGKILL.

        Adopted groups are their starter's to stop; whatever of them is left afterwards
        (the starter was killed, or failed) is killed too.
        """
        while self.started:
            item = self.started.pop()
            if item.proc.poll() is None:
                item.proc.send_signal(item.stop_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    item.proc.wait(timeout=item.grace_s)
            # Workers left behind (or a master that ignored us) share the process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(item.proc.pid, signal.SIGKILL)
            item.proc.wait()
        while self.adopted:
            group = self.adopted.pop()
            if _start_time(group.pgid) == group.leader_start:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group.pgid, signal.SIGKILL)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
