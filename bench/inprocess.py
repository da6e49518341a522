"""CPU time per request of ipgeo's WSGI app called in process (no server, no network).

Measures what the Python side of a request costs, for the lean path and Flask's, with the
multi-process metrics and the access log as uWSGI runs them (the log goes to a temp file).
CPU time, not wall time: outside load on a shared machine hardly changes it.

    .venv/bin/python -m bench.inprocess --requests 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ipgeo.logs import setup_logging
from ipgeo.metrics import enable_multiprocess
from ipgeo.settings import Settings


def _addresses(count: int, known: Callable[[str], bool], seed: int) -> list[str]:
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        text = socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big"))
        if known(text):
            found.append(text)
    return found


def _start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    """Print µs of CPU per request for each path, variant and round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    enable_multiprocess()
    log_file = Path(tempfile.mkdtemp(prefix="ipgeo-inprocess-")) / "app.log"
    setup_logging("text", stream=log_file.open("w"))
    from ipgeo.web import create_app  # after the metrics mode is set

    apps = {
        f"lean={lean} log={log}": create_app(
            Settings.from_env({"IPGEO_LEAN_PATH": lean, "IPGEO_ACCESS_LOG": log})
        )
        for lean in ("true", "false")
        for log in ("true", "false")
    }
    service = next(iter(apps.values())).extensions["ipgeo.geo"]
    known: Callable[[str], bool] = lambda text: service.quick_ipv4(text) is not None  # noqa: E731
    environ = {
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_REQUEST_ID": "0123456789abcdef0123456789abcdef",
        "HTTP_USER_AGENT": "wrk",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "localhost",
    }
    warmup = _addresses(2000, known, seed=0)  # builds each app's tree table and caches
    for app in apps.values():
        for text in warmup:
            b"".join(app({**environ, "PATH_INFO": "/api/v1/lookup/" + text}, _start_response))  # type: ignore[arg-type]
    for round_no in range(1, args.rounds + 1):
        # fresh addresses per round: answer-cache misses, as with bench/http's random IPs
        addresses = _addresses(args.requests, known, seed=round_no)
        for name, app in apps.items():
            for path in ("/api/v1/lookup/", "/ip"):
                started = time.process_time()
                for text in addresses:
                    request = dict(environ)
                    if path == "/ip":
                        request["PATH_INFO"], request["REMOTE_ADDR"] = path, text
                    else:
                        request["PATH_INFO"] = path + text
                    answer: Iterable[bytes] = app(request, _start_response)  # type: ignore[arg-type]
                    b"".join(answer)
                spent = (time.process_time() - started) / len(addresses) * 1e6
                print(f"round {round_no} {name:22s} {path:16s} {spent:6.1f} µs/request")
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
