"""The parity inputs: seeded addresses, request variants and the ``ipgeo bulk`` input files."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEED = 20_250_601
# Valid, reserved, mapped, non-canonical and invalid queries (all IP-like: none goes to DNS).
EDGE_CASES = (
    "1.1.1.1", "8.8.8.8", "81.2.69.142", "89.160.20.128", "2.125.160.216", "::ffff:8.8.8.8",
    "::ffff:81.2.69.142", "::FFFF:1.2.3.4", "2a02:c7c::1", "2A02:C7C::1", "2001:218::1",
    "2001:4860:4860::8888", "2001:4860:4860:0:0:0:0:8888", "2001:0db8:0000::1", "0.0.0.0",
    "255.255.255.255", "10.0.0.1", "127.0.0.1", "100.64.0.1", "169.254.1.1", "192.0.2.7",
    "192.88.99.1", "224.1.1.1", "240.0.0.1", "::", "::1", "fe80::1", "fe80::1%eth0",
    "2a02:c7c::1%eth0", "fd00::1", "ff02::1", "64:ff9b::808:808", "2002:808:808::1",
    "001.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.", "999.1.1.1", "1.2.3.4/24", "1:2:3",
    " 81.2.69.142 ", "8.8.8.8 ", "8.8.8.8\x00", "bad!", "",
)  # fmt: skip
# A scope id (``%eth0``) made a batch answer 500 and ``ipgeo bulk`` crash (KeyError in the bulk
# engine) before the refactor: such addresses are asked alone, so that they spoil nothing else.
SCOPED = tuple(ip for ip in EDGE_CASES if "%" in ip)

FIELD_SELECTIONS = (  # ?fields= values of tests/test_json_batch.py, test_api.py, test_lean.py ...
    "ip", "city", "network", "latitude", "ip,country_iso", "ip,city", "ip,local_time",
    "utc_offset,local_time", "local_time,city,ip,utc_offset,query,addresses",
    "asn_org,time_zone_source,asn,hostname,version",
)  # fmt: skip
_CURL = (("Accept", "*/*"), ("User-Agent", "curl/8.0"))
_BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
Headers = tuple[tuple[str, str], ...]
# (query string, headers) of single lookups: formats, fields, lang, combinations, Accept.
LOOKUP_VARIANTS: tuple[tuple[str, Headers], ...] = (
    *((f"format={fmt}", ()) for fmt in ("json", "xml", "csv", "text")),
    *((f"fields={fields}", ()) for fields in FIELD_SELECTIONS),
    *((f"lang={lang}", ()) for lang in ("de", "fr", "ja", "pt-BR", "xx")),
    ("fields=country,city&lang=de", ()),
    ("fields=country,city,region&lang=ja", ()),
    ("format=xml&lang=de", ()),
    ("format=csv&fields=ip,city", ()),
    ("format=csv&lang=pt-BR", ()),
    ("format=text&fields=ip,utc_offset,local_time&lang=fr", ()),
    ("fields=&lang=", ()),
    ("fields=ip,+city,ip", ()),
    ("format=yaml", ()),
    ("fields=nope", ()),
    ("lang=%3Cscript%3E", ()),
    ("", (("Accept", "text/csv"),)),
    ("", (("Accept", "application/xml"),)),
    ("", (("Accept", "text/xml"),)),
    ("", (("Accept", "text/plain"),)),
    ("", (("Accept", "application/json"),)),
    ("", (("Accept", _BROWSER),)),
    ("", _CURL),
    ("fields=city", _CURL),
)
OWN_VARIANTS: tuple[tuple[str, Headers], ...] = (  # /json, the caller's own lookup
    ("", ()),
    ("fields=ip", ()),
    ("fields=ip,visits", ()),
    ("fields=bogus", ()),
    ("format=xml", ()),
    ("format=text&fields=ip,local_time", ()),
    ("lang=de", ()),
    ("", (("Accept", "text/csv"),)),
    ("", _CURL),
)
PLAIN_ENDPOINTS = ("country", "country-iso", "city", "coordinates", "timezone", "asn")
BATCH_VARIANTS = (  # query strings of POST /api/v1/batch, as in tests/test_json_batch.py
    "", "fields=ip,country_iso", "fields=network", "fields=latitude",
    "fields=local_time,city,ip,utc_offset,query,addresses",
    "fields=asn_org,time_zone_source,asn,hostname,version",
    *(f"fields=country,city,region&lang={lang}" for lang in ("de", "ja", "pt-BR", "xx")),
    "lang=de",
)  # fmt: skip
_IPV6_BLOCKS = (0x2001, 0x2400, 0x2600, 0x2800, 0x2A00, 0x2C0F)


def random_addresses(rng: random.Random, v4: int, v6: int) -> list[str]:
    """``v4`` IPv4 addresses uniform over 32 bits, ``v6`` IPv6 ones, mostly in 2000::/3."""
    found = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(v4)]
    for _ in range(v6):
        draw = rng.random()
        if draw < 0.6:  # in the registries' big allocations, where networks live
            top = rng.randrange(_IPV6_BLOCKS[0], _IPV6_BLOCKS[-1] + 1)
            number = top << 112 | rng.getrandbits(112)
        elif draw < 0.9:
            number = 1 << 125 | rng.getrandbits(125)  # anywhere in 2000::/3
        else:
            number = rng.getrandbits(128)
        found.append(str(ipaddress.IPv6Address(number)))
    return found


def asn_addresses(rng: random.Random, listing: Path) -> tuple[list[str], list[str]]:
    """First, last and a random address of every network in the ASN test data, and CIDRs:
    the small networks, and the first /24 (IPv4) or /48 (IPv6) of each big one."""
    found: list[str] = []
    cidrs: list[str] = []
    for entry in json.loads(listing.read_text()):
        net = ipaddress.ip_network(next(iter(entry)))
        inside = net[rng.randrange(net.num_addresses)]
        found += [str(net.network_address), str(inside), str(net.broadcast_address)]
        small, first = (20, 24) if net.version == 4 else (48, 48)  # bulk: ~1 ms a row of IPv6
        cidrs.append(str(net if net.prefixlen >= small else next(net.subnets(new_prefix=first))))
    return found, cidrs


def bulk_lines(rng: random.Random, addresses: list[str], extra: int) -> list[str]:
    """Every address once plus ``extra`` Zipf-like repeats, shuffled, and a few bad lines."""
    ranked = rng.sample(addresses, len(addresses))  # the most frequent ones: random addresses
    weights = [1.0 / (rank + 1) for rank in range(len(ranked))]
    lines = addresses + rng.choices(ranked, weights, k=extra)
    rng.shuffle(lines)
    odd = ["foo", "999.1.1.1", "1.2.3.0/24", "1.1.1.1-1.1.1.3", "# comment", "", "\t",
           "  8.8.8.8  ", "8.8.8.8,9.9.9.9", "\x01garbage\udcff", "2001:db8::1 extra"]  # fmt: skip
    for line in odd:  # after the first 400 lines: the file is still detected as a list
        lines.insert(rng.randrange(400, len(lines)), line)
    return lines


def access_log(rng: random.Random, lines: list[str]) -> list[str]:
    """A combined-format access log with one request per line of ``lines``."""
    start = datetime(2024, 10, 10, tzinfo=UTC)
    paths = ("/", "/index.html", "/api/v1/lookup/8.8.8.8", "/static/site.css", "/feed.xml")
    agents = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5")
    out = []
    for number, client in enumerate(lines):
        when = (start + timedelta(seconds=number)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        out.append(
            f'{client.strip() or "-"} - - [{when}] "GET {rng.choice(paths)} HTTP/1.1" 200 '
            f'{rng.randrange(100, 50_000)} "https://example.org/" "{rng.choice(agents)}"'
        )
    return out


def cidr_lines(rng: random.Random, addresses: list[str], count: int, most: int) -> list[str]:
    """CIDRs and ranges around some of ``addresses``, each with at most ``most`` addresses."""
    lines = ["81.2.69.0/24", "89.160.20.112/28", "8.8.8.0/30", "1.1.1.1-1.1.1.2", "10.0.0.0/30",
             "2001:218::/120", "1.2.3.4/33", "5.5.5.9-5.5.5.1", "not a network"]  # fmt: skip
    for text in rng.sample(addresses, count):
        ip = ipaddress.ip_address(text)
        bits = rng.randrange(most.bit_length())
        if rng.random() < 0.5:
            net = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen - bits}", strict=False)
            lines.append(str(net))
        else:
            span = min(rng.randrange(1 << bits), 2**ip.max_prefixlen - 1 - int(ip))
            lines.append(f"{ip}-{ip + span}")
    return lines


def write_lines(path: Path, lines: list[str]) -> None:
    """Write ``lines`` (raw bytes kept through surrogate escapes) with newlines."""
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
