"""CPU time per request of ipgeo's WSGI app called in process (no server, no network).

Measures what the Python side of a request costs in the configurations the request pipeline
is judged by: the defaults; ``fields`` and ``lang``; an allowlist plus a rate limit counted in
a real Redis (a private ``redis-server`` started for the run, or ``--redis-url``). Metrics
are multi-process and the access log is off, as under uWSGI (``--access-log`` turns it on,
into a temp file). Each line also shows the lookup kernel alone for the same addresses
(``GeoService.lookup`` plus rendering, what the handlers call) and the difference: the app's
own cost around the lookup (an upper bound: a lookup between two requests' other work costs
more than lookups in a row). ``/ip`` answers without a lookup, so its figure is the app's own
cost alone. CPU time, not wall time: outside load on a shared machine changes it less; the
last lines give the best round of each case.

    .venv/bin/python -m bench.inprocess --requests 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ipgeo.formats import render
from ipgeo.geo import GeoError, GeoService
from ipgeo.logs import setup_logging
from ipgeo.metrics import enable_multiprocess
from ipgeo.settings import Settings

FIELDS = "ip,country_iso,region,city,latitude,longitude,time_zone"
# Never reached in a run: every request is counted, none is refused.
RATE_LIMIT = "100000000/hour"


@dataclass(frozen=True)
class Case:
    """One measured request shape on one app configuration."""

    name: str
    config: str
    path: str  # ``{ip}`` is replaced by each address
    query: str = ""
    peer_is_address: bool = False  # /ip, /json: the address is the caller's
    fields: tuple[str, ...] | None = None
    lang: str | None = None
    looks_up: bool = True  # /ip answers without a lookup


CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "allowlist+rate-limit": {"IPGEO_ALLOWED": "0.0.0.0/0", "IPGEO_RATE_LIMIT": RATE_LIMIT},
}
CASES = [
    Case("lookup", "defaults", "/api/v1/lookup/{ip}"),
    Case(
        "lookup fields+lang",
        "defaults",
        "/api/v1/lookup/{ip}",
        f"fields={FIELDS}&lang=de",
        fields=tuple(FIELDS.split(",")),
        lang="de",
    ),
    Case("/ip", "defaults", "/ip", peer_is_address=True, looks_up=False),
    Case("/json", "defaults", "/json", peer_is_address=True),
    Case("lookup", "allowlist+rate-limit", "/api/v1/lookup/{ip}"),
    Case("/ip", "allowlist+rate-limit", "/ip", peer_is_address=True, looks_up=False),
]


def _addresses(count: int, known: Callable[[str], bool], seed: int) -> list[str]:
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        text = socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big"))
        if known(text):
            found.append(text)
    return found


def _start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"the bench expects 200 answers, got {status}")


@contextmanager
def _redis_server(url: str | None) -> Iterator[str]:
    """``url``, or a private redis-server on a free port for the length of the run."""
    if url:
        yield url
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="ipgeo-bench-redis-")
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _kernel(service: GeoService, case: Case, addresses: list[str]) -> float:
    """µs of CPU per address for what a handler calls: the lookup and its rendering."""
    if not case.looks_up:
        return 0.0
    started = time.process_time()
    for text in addresses:  # every one is in the database (see ``_addresses``)
        render(service.lookup(text, case.lang).as_dict(case.fields), "json")
    return (time.process_time() - started) / len(addresses) * 1e6


def _through_app(app: Any, case: Case, environ: dict[str, Any], addresses: list[str]) -> float:
    """µs of CPU per request through the WSGI callable."""
    requests = []
    for text in addresses:
        request = dict(environ, PATH_INFO=case.path.format(ip=text), QUERY_STRING=case.query)
        if case.peer_is_address:
            request["REMOTE_ADDR"] = text
        requests.append(request)
    started = time.process_time()
    for request in requests:
        answer: Iterable[bytes] = app(request, _start_response)
        b"".join(answer)
    return (time.process_time() - started) / len(requests) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print µs of CPU per request for each case and round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--access-log", action="store_true", help="write the access-log line")
    args = parser.parse_args(argv)
    enable_multiprocess()
    log_file = Path(tempfile.mkdtemp(prefix="ipgeo-inprocess-")) / "app.log"
    setup_logging("text", stream=log_file.open("w"))
    from ipgeo.web import create_app  # after the metrics mode is set

    log = "true" if args.access_log else "false"
    with _redis_server(args.redis_url) as redis_url:
        apps = {
            name: create_app(
                Settings.from_env({**env, "IPGEO_ACCESS_LOG": log, "IPGEO_REDIS_URL": redis_url})
                if env
                else Settings.from_env({"IPGEO_ACCESS_LOG": log})
            )
            for name, env in CONFIGS.items()
        }
        service: GeoService = apps["defaults"].extensions["ipgeo.geo"]

        def known(text: str) -> bool:
            try:
                service.lookup(text)
            except GeoError:
                return False
            return True

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
        warmup = _addresses(2000, known, seed=0)  # the databases' pages, the apps' first calls
        for case in CASES:
            _through_app(apps[case.config], case, environ, warmup)
        print(f"{'case':24s} {'config':22s} {'app':>8s} {'kernel':>8s} {'around':>8s}  µs CPU")
        best: dict[Case, tuple[float, float]] = {}
        for round_no in range(1, args.rounds + 1):
            addresses = _addresses(args.requests, known, seed=round_no)  # fresh per round
            for case in CASES:
                app_cost = _through_app(apps[case.config], case, environ, addresses)
                kernel = _kernel(service, case, addresses)
                print(
                    f"{case.name:24s} {case.config:22s} {app_cost:8.1f} {kernel:8.1f} "
                    f"{app_cost - kernel:8.1f}  round {round_no}"
                )
                previous = best.get(case, (app_cost, kernel))
                best[case] = (min(previous[0], app_cost), min(previous[1], kernel))
        for case, (app_cost, kernel) in best.items():
            print(
                f"{case.name:24s} {case.config:22s} {app_cost:8.1f} {kernel:8.1f} "
                f"{app_cost - kernel:8.1f}  best"
            )
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
