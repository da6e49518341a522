"""Realistic Apache/nginx combined access logs for tests (IPv4 and IPv6, a few bad lines)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bench.accesslog import public_ips

__all__ = ["AGENTS", "BAD_LINES", "PATHS", "RESERVED", "combined_log", "public_ips"]

PATHS = ["/", "/index.html", "/api/v1/lookup/8.8.8.8", "/static/site.css", "/login", "/feed.xml"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
RESERVED = ["10.1.2.3", "192.168.0.7", "127.0.0.1", "::1", "fe80::1", "172.16.5.4"]
BAD_LINES = [
    'www.example.com - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 12',
    '999.1.1.1 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 12',
    "\x00\x01garbage\xff",
    '- - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 400 0',
]


def combined_log(
    rng: random.Random, lines: int, distinct: int, bad_every: int = 0
) -> tuple[list[str], list[str | None]]:
    """Log lines and, for each, the client IP written (``None`` for bad or blank lines)."""
    pool = public_ips(rng, distinct) + RESERVED
    weights = [1.0 / (rank + 1) for rank in range(len(pool))]  # Zipf-like
    start = datetime(2024, 10, 10, tzinfo=UTC)
    out: list[str] = []
    clients: list[str | None] = []
    for number in range(lines):
        if bad_every and number % bad_every == bad_every - 1:
            bad = BAD_LINES[(number // bad_every) % len(BAD_LINES)]
            out.append(bad)
            clients.append(None)
            continue
        ip = rng.choices(pool, weights)[0]
        when = (start + timedelta(seconds=number)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        path = rng.choice(PATHS)
        agent = rng.choice(AGENTS)
        out.append(
            f'{ip} - - [{when}] "GET {path} HTTP/1.1" 200 {rng.randrange(100, 50000)} '
            f'"https://example.org/" "{agent}"'
        )
        clients.append(ip)
    return out, clients
