"""A generated combined access log for bulk runs: IPv4 and IPv6, Zipf-like repeats, reserved
addresses and bad lines; deterministic for a seed. Importable (tests, the chunked-job bench).

    .venv/bin/python -m bench.accesslog /tmp/access.log --lines 2000000 [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

PATHS = ("/", "/index.html", "/api/v1/lookup/8.8.8.8", "/static/site.css", "/feed.xml", "/login")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
RESERVED = ("10.1.2.3", "192.168.0.7", "127.0.0.1", "::1", "fe80::1", "172.16.5.4")
BAD_LINES = (
    'www.example.com - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 12',
    '999.1.1.1 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 12',
    '- - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 400 0',
    "",
)
_BLOCK = 10_000


def address_pool(rng: random.Random, count: int, v6_share: float = 0.2) -> list[str]:
    """``count`` random global addresses (a share IPv6, in allocated space) plus reserved ones."""
    return public_ips(rng, count, v6_share) + list(RESERVED)


def public_ips(rng: random.Random, count: int, v6_share: float = 0.25) -> list[str]:
    """``count`` random global addresses, a share of them IPv6 (in allocated space)."""
    found: list[str] = []
    while len(found) < count:
        if rng.random() < v6_share:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                (0x2001 + rng.randrange(0x0C00)) << 112 | rng.getrandbits(112)
            )
        else:
            ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if ip.is_global:
            found.append(str(ip))
    return found


def write_log(
    out: BinaryIO, lines: int, distinct: int = 100_000, bad_every: int = 997, seed: int = 18
) -> None:
    """Write ``lines`` log lines over about ``distinct`` addresses (Zipf-like, s = 1); every
    ``bad_every``-th line is a bad or blank one."""
    rng = random.Random(seed)
    pool = address_pool(rng, distinct)
    weights = [1.0 / (rank + 1) for rank in range(len(pool))]
    start = datetime(2024, 10, 10, tzinfo=UTC)
    ends = [f' HTTP/1.1" 200 {size} "https://example.org/" "' for size in range(100, 9100)]
    for first in range(0, lines, _BLOCK):  # _BLOCK is a multiple of 10 (one second: 10 lines)
        count = min(_BLOCK, lines - first)
        clients = rng.choices(pool, weights, k=count)
        parts: list[str] = []
        when = ""
        for offset, ip in enumerate(clients):
            number = first + offset
            if offset % 10 == 0:
                moment = start + timedelta(seconds=number // 10)
                when = moment.strftime("%d/%b/%Y:%H:%M:%S +0000")
            if bad_every and number % bad_every == bad_every - 1:
                parts.append(BAD_LINES[(number // bad_every) % len(BAD_LINES)])
                continue
            parts.append(
                f'{ip} - - [{when}] "GET {PATHS[number % 6]}{ends[number % 9000]}'
                f'{AGENTS[number % 3]}"'
            )
        out.write(("\n".join(parts) + "\n").encode())


def write_log_file(path: Path, lines: int, compress: bool = False, **kwargs: int) -> Path:
    """``write_log`` into ``path`` (gzip-compressed, level 1, when ``compress``)."""
    if compress:
        with gzip.open(path, "wb", compresslevel=1) as packed:
            write_log(packed, lines, **kwargs)  # type: ignore[arg-type]
    else:
        with path.open("wb") as out:
            write_log(out, lines, **kwargs)
    return path


def main() -> None:
    """Write a log file from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    write_log_file(args.path, args.lines, args.gzip, distinct=args.distinct)


if __name__ == "__main__":
    main()
