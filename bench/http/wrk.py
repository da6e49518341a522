"""Running wrk against a local URL and parsing its report."""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.http.addresses import Range

LUA_TEMPLATE = Path(__file__).with_name("lookup.lua")
LOOPBACK_HOSTS = {"127.0.0.1", "::1"}
INSTALL_HINT = "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu package wrk)"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds
_SCALE = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this module cannot read."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx_3xx: int  # wrk's "Non-2xx or 3xx responses": in fact statuses >= 400
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def socket_errors(self) -> int:
        """All socket-level errors: connect, read, write and timeout."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def ok_requests_per_s(self) -> float:
        """Answers with a status below 400 per second: failing fast does not count."""
        if not self.requests:
            return 0.0
        return self.requests_per_s * (self.requests - self.non_2xx_3xx) / self.requests

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with the derived totals."""
        return {
            **asdict(self),
            "socket_errors": self.socket_errors,
            "ok_requests_per_s": round(self.ok_requests_per_s, 1),
        }


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise WrkError(f"unreadable wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _count(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([kKMG]?)", text)
    if not match:
        raise WrkError(f"unreadable wrk count {text!r}")
    return float(match[1]) * _SCALE[match[2]]


def parse_wrk_output(text: str) -> WrkResult:
    """Read wrk's report (run with ``--latency``) into a ``WrkResult``."""
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.MULTILINE)
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", text, re.MULTILINE))
    total = re.search(r"^\s+(\d+) requests in ([\d.]+\w+),", text, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if not (latency and total and rate) or len(percentiles) != 4:
        raise WrkError("wrk output lacks the latency, percentile or total lines:\n" + text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    connect, read, write, timeout = (int(n) for n in sockets.groups()) if sockets else (0,) * 4
    non_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        requests=int(total[1]),
        duration_s=_duration_ms(total[2]) / 1e3,
        requests_per_s=float(rate[1]),
        latency_avg_ms=_duration_ms(latency[1]),
        latency_max_ms=_duration_ms(latency[3]),
        p50_ms=_duration_ms(percentiles["50"]),
        p75_ms=_duration_ms(percentiles["75"]),
        p90_ms=_duration_ms(percentiles["90"]),
        p99_ms=_duration_ms(percentiles["99"]),
        non_2xx_3xx=int(non_ok[1]) if non_ok else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def write_lua_script(
    path: Path, path_prefix: str, excluded: list[Range], batch: int = 0, path_suffix: str = ""
) -> Path:
    """Write the request-generating Lua script for ``path_prefix`` and the excluded ranges.

    Every request is a GET of ``path_prefix`` + one address + ``path_suffix``; with ``batch``
    > 0 it POSTs a JSON array of that many addresses to ``path_prefix`` instead.
    """
    if not excluded:
        raise ValueError("the excluded ranges must not be empty")
    for part in (path_prefix, path_suffix):
        if not re.fullmatch(r"[\w/.?=&,:%+-]*", part):
            raise ValueError(f"not a plain URL part: {part!r}")
    script = (
        LUA_TEMPLATE.read_text()
        .replace("@PATH_PREFIX@", path_prefix)
        .replace("@PATH_SUFFIX@", path_suffix)
        .replace("@BATCH@", str(int(batch)))
        .replace("@STARTS@", ",".join(str(first) for first, _ in excluded))
        .replace("@ENDS@", ",".join(str(last) for _, last in excluded))
    )
    path.write_text(script)
    return path


def wrk_binary() -> str:
    """Path of the wrk executable, or a ``WrkError`` saying how to install it."""
    found = shutil.which("wrk")
    if not found:
        raise WrkError(INSTALL_HINT)
    return found


def run_wrk(
    url: str,
    script: Path,
    *,
    threads: int,
    connections: int,
    duration_s: int,
    timeout_s: float = 2.0,
) -> tuple[WrkResult, str]:
    """Run wrk against ``url`` (loopback only) and return the parsed result and raw output."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise WrkError(f"refusing to send load to {host!r}: the benchmark is loopback-only")
    argv = [
        wrk_binary(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(random.randrange(1, 2**31)),  # the Lua script's seed: fresh addresses every run
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        # wrk stops itself after -d; the margin covers start-up and a loaded machine.
        output, _ = proc.communicate(timeout=duration_s + timeout_s + 30)
    except BaseException:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with status {proc.returncode}:\n{output}")
    return parse_wrk_output(output), output
