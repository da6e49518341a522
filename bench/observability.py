"""Cost of request observability (request id, access log, metrics, build header) per request.

Runs the lookup endpoint through the WSGI app in-process, with and without the hooks of
``ipgeo.web.observability``, interleaved, and prints requests/s and ratios to the baseline.

    .venv/bin/python bench/observability.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from ipgeo.logs import setup_logging
from ipgeo.settings import Settings
from ipgeo.web import create_app, observability

PATH = "/api/v1/lookup/81.2.69.142"


def without_hooks(app: Flask) -> Flask:
    """The same app with the observability hooks taken out (the baseline)."""
    app.before_request_funcs[None].remove(observability._before)
    app.after_request_funcs[None].remove(observability._after)
    app.teardown_request_funcs[None].remove(observability._teardown)
    return app


def runner(app: Flask) -> Callable[[int], float]:
    environ = EnvironBuilder(path=PATH, headers=[("User-Agent", "bench/1")]).get_environ()

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        assert status.startswith("200"), status
        return lambda _data: None

    def run(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            body = app.wsgi_app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close:
                close()
        return count / (time.perf_counter() - started)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    city = os.environ.get("IPGEO_CITY_DB", "")
    settings = Settings.from_env({"IPGEO_CITY_DB": city} if city else {})
    sink = io.StringIO()
    variants: dict[str, tuple[Flask, str | None]] = {
        "baseline (no hooks)": (without_hooks(create_app(settings)), None),
        "hooks, access log off": (create_app(settings), None),
        "hooks, text access log": (create_app(settings), "text"),
        "hooks, JSON access log": (create_app(settings), "json"),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (app, log_format) in variants.items():
            setup_logging(log_format or "text", stream=sink)
            logging.getLogger("ipgeo.access").disabled = log_format is None
            runner(app)(500)  # warm up
            results[name].append(runner(app)(args.requests))
            sink.seek(0)
            sink.truncate()
    base = statistics.median(results["baseline (no hooks)"])
    print(f"{'variant':<26} {'req/s (median)':>15} {'ratio':>7}")
    for name, rates in results.items():
        rate = statistics.median(rates)
        print(f"{name:<26} {rate:>15.0f} {rate / base:>7.2f}")


if __name__ == "__main__":
    main()
