"""CPU time of ``POST /api/v1/batch`` in process, against one single lookup per address.

Posts --requests batches of --size fresh random public IPv4 addresses (the bench/http
generator's address space: no reserved ranges, no database gaps) through the app's test
client, and answers the same addresses one ``GeoService.lookup`` at a time (rendered with
orjson) as the reference, each in a fresh app (cold record cache, as after a start). Reports
process CPU time (not wall time, so other load on the machine counts little) per batch and
per address, and the ratio. The endpoint's answers are checked against the single lookups'
for every batch (clock fields aside).

    .venv/bin/python -m bench.batch                       # 300 batches of 1000
    .venv/bin/python -m bench.batch --requests 1000       # longer: warmer record cache
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import time
from collections.abc import Callable

import orjson
from flask import Flask

from bench.http.addresses import excluded_ranges, is_excluded
from ipgeo.formats import to_json
from ipgeo.settings import Settings
from ipgeo.web.app import create_app

_CLOCK = re.compile(rb'"local_time":"[^"]*"')


def random_batches(path_ranges: list[tuple[int, int]], count: int, size: int) -> list[bytes]:
    """``count`` JSON arrays of ``size`` random addresses outside the excluded ranges."""
    rng = random.Random(2026)
    batches = []
    for _ in range(count):
        addresses: list[str] = []
        while len(addresses) < size:
            number = rng.getrandbits(32)
            if not is_excluded(number, path_ranges):
                addresses.append(socket.inet_ntoa(number.to_bytes(4, "big")))
        batches.append(orjson.dumps(addresses))
    return batches


def cpu_per_batch(run: Callable[[bytes], bytes], batches: list[bytes]) -> tuple[float, list[bytes]]:
    """Process CPU seconds per batch, and the bodies."""
    started = time.process_time()
    bodies = [run(body) for body in batches]
    return (time.process_time() - started) / len(batches), bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()

    def fresh_app() -> Flask:
        return create_app(Settings.from_env({}))

    app = fresh_app()
    ranges = excluded_ranges(app.extensions["ipgeo.geo"].city_path)
    batches = random_batches(ranges, args.requests, args.size)

    service = app.extensions["ipgeo.geo"]

    def regular(body: bytes) -> bytes:
        return to_json([service.lookup(query).as_dict() for query in orjson.loads(body)])

    client = fresh_app().test_client()

    def fast(body: bytes) -> bytes:
        data: bytes = client.post("/api/v1/batch", data=body).data
        return data

    regular_cpu, expected = cpu_per_batch(regular, batches)
    fast_cpu, bodies = cpu_per_batch(fast, batches)
    same = all(
        _CLOCK.sub(b"", one) == _CLOCK.sub(b"", two)
        for one, two in zip(expected, bodies, strict=True)
    )
    print(f"{args.requests} batches of {args.size} random public IPv4 addresses, fresh apps")
    print("| path | CPU ms per batch | CPU µs per address | lookups/s per core |")
    print("|---|---|---|---|")
    for name, cpu in (("single lookups + orjson", regular_cpu), ("endpoint", fast_cpu)):
        per_address = cpu / args.size * 1e6
        print(f"| {name} | {cpu * 1e3:.2f} | {per_address:.1f} | {1e6 / per_address:,.0f} |")
    print(f"ratio regular/endpoint: {regular_cpu / fast_cpu:.2f}x; same answers: {same}")


if __name__ == "__main__":
    main()
