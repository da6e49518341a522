"""Input formats: detection, and pulling the IP (or CIDR / range) out of each line.

Every extractor returns the item as bytes, ``b""`` for a line to skip (blank or comment), or
raises ``Unparseable`` with a short reason.
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Callable
from typing import Any

import orjson

from ipgeo.bulk.errors import BulkError
from ipgeo.geo.queries import parse_ip

INPUT_FORMATS = ("auto", "ips", "cidrs", "log", "jsonl", "csv")
# JSON keys and CSV column names tried, in order, when none is given.
IP_NAMES = (
    "ip",
    "ip_address",
    "ipaddress",
    "client_ip",
    "clientip",
    "remote_addr",
    "remote_ip",
    "src_ip",
    "source_ip",
    "address",
    "addr",
    "host",
)
SAMPLE_LINES = 200

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Extractor = Callable[[bytes], bytes]


class Unparseable(Exception):
    """A line that holds no usable IP address; the message says why."""


def is_ip(token: bytes) -> bool:
    """True when ``token`` is an IPv4 or IPv6 address."""
    try:
        return parse_ip(token.decode("ascii")) is not None
    except UnicodeDecodeError:
        return False


def is_range(token: bytes) -> bool:
    """True when ``token`` is a CIDR network or an ``a-b`` range."""
    try:
        return parse_range(token.decode("ascii")) is not None
    except (UnicodeDecodeError, BulkError):
        return False


def parse_range(text: str) -> tuple[IPAddress, IPAddress] | None:
    """First and last address of ``a.b.c.d/n`` or ``a-b``; ``None`` when ``text`` is neither."""
    if "/" in text:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            return None
        return network.network_address, network.broadcast_address
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        first, last = parse_ip(first_text), parse_ip(last_text)
        if first is None or last is None:
            return None
        if first.version != last.version:
            raise BulkError(f"{text!r} mixes IPv4 and IPv6")
        if int(first) > int(last):
            raise BulkError(f"{text!r} ends before it starts")
        return first, last
    return None


def _content(line: bytes) -> bytes:
    item = line.strip()
    return b"" if item.startswith(b"#") else item


def list_item(line: bytes) -> bytes:
    """An IP list line: one IP, CIDR or range, optionally followed by ``# comment``."""
    return line.split(b"#", 1)[0].strip()


def log_client(line: bytes) -> bytes:
    """An access-log line (common/combined, Apache or nginx): the client IP is the first field."""
    if not line or line[0] in b" \t\r#":
        return _content(line)
    return line.partition(b" ")[0]


def json_extractor(path: tuple[str, ...]) -> Extractor:
    """Pull the string at ``path`` (``a.b.c``) out of each JSON object."""
    shown = ".".join(path)

    def extract(line: bytes) -> bytes:
        if not _content(line):
            return b""
        try:
            value: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise Unparseable("not valid JSON") from None
        for key in path:
            if not isinstance(value, dict) or key not in value:
                raise Unparseable(f"no field {shown}")
            value = value[key]
        if not isinstance(value, str) or not value.strip():
            raise Unparseable(f"field {shown} is not a non-empty string")
        return value.strip().encode("utf-8", "replace")

    return extract


def csv_extractor(header: list[str], column: str | None, name: str) -> Extractor:
    """Pull column ``column`` (or the first known IP column) out of each CSV row."""
    names = [item.strip() for item in header]
    lowered = [item.lower() for item in names]
    if column:
        wanted = [column] if column in names else [n for n in names if n.lower() == column.lower()]
    else:
        wanted = [names[lowered.index(item)] for item in IP_NAMES if item in lowered]
    if not wanted:
        raise BulkError(
            f"{name}: CSV header has no column {column!r}"
            if column
            else f"{name}: CSV header has no IP column; name one with --ip-column"
        )
    index = names.index(wanted[0])

    def extract(line: bytes) -> bytes:
        if not _content(line):
            return b""
        try:
            row = next(csv.reader([line.decode("utf-8", "replace")]))
        except (csv.Error, StopIteration):
            raise Unparseable("not a CSV row") from None
        if index >= len(row):
            raise Unparseable(f"row has no column {names[index]}")
        value = row[index].strip()
        if not value:
            raise Unparseable(f"column {names[index]} is empty")
        return value.encode("utf-8", "replace")

    return extract


def csv_header(line: bytes) -> list[str]:
    """The column names of a CSV header line."""
    try:
        return next(csv.reader([line.decode("utf-8", "replace")]))
    except (csv.Error, StopIteration):
        return []


def detect(sample: list[bytes | None], ip_column: str | None) -> str | None:
    """Guess the format of a file from its first lines (``None`` when nothing fits)."""
    lines = [item for line in sample[: SAMPLE_LINES * 2] if line and (item := _content(line))]
    lines = lines[:SAMPLE_LINES]
    if not lines:
        return None
    if lines[0].startswith(b"{"):
        return "jsonl"
    listed = sum(1 for line in lines if is_ip(list_item(line)) or is_range(list_item(line)))
    logged = sum(1 for line in lines if b" " in line and is_ip(line.partition(b" ")[0]))
    if listed * 2 >= len(lines) and listed >= logged:
        ranged = any(is_range(list_item(line)) for line in lines)
        return "cidrs" if ranged else "ips"
    if logged * 2 >= len(lines):
        return "log"
    header = [item.strip().lower() for item in csv_header(lines[0])]
    names = (ip_column.lower(),) if ip_column else IP_NAMES
    if len(header) > 1 and any(name in header for name in names):
        return "csv"
    return None


def guess_json_field(sample: list[bytes | None]) -> str | None:
    """The usual IP field name found in the first JSON line of ``sample``, if any."""
    for line in sample:
        if not line or not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict):
            return None
        for name in IP_NAMES:
            if isinstance(value.get(name), str):
                return name
        return None
    return None
