"""The bulk enrichment engine: inputs in, rows and a ``Summary`` out (no Flask, no click)."""

from __future__ import annotations

import io
import ipaddress
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from ipgeo.bulk.errors import BulkError, Cancelled
from ipgeo.bulk.lookup import FIRST_PLACE, NOT_FOUND, RESERVED, CachedLookup, Entry
from ipgeo.bulk.parsing import (
    INPUT_FORMATS,
    IP_NAMES,
    Extractor,
    Unparseable,
    csv_extractor,
    csv_header,
    detect,
    json_extractor,
    list_item,
    log_client,
    parse_range,
)
from ipgeo.bulk.sources import MAX_LINE, Input, Source, open_source, read_batches
from ipgeo.bulk.summary import MAX_SAMPLES, BadLine, Summary, top_places
from ipgeo.bulk.writers import RowWriter, columns_for
from ipgeo.geo import GeoService
from ipgeo.geo.queries import parse_ip

SKIP, IP, RANGE, BAD = range(4)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EXPAND_CHUNK = 4096


@dataclass(frozen=True)
class Options:
    """How to read the inputs and what to write."""

    output_format: str = "csv"
    fields: tuple[str, ...] | None = None
    unique: bool = False
    input_format: str = "auto"
    ip_field: str | None = None
    ip_column: str | None = None
    expand: bool = False
    max_expand: int = 65_536
    top: int = 10
    lang: str | None = None
    cache_size: int = 65_536
    max_line: int = MAX_LINE


@dataclass(frozen=True)
class Progress:
    """Where a run is: the current source, bytes of all sized inputs, lines and rows so far."""

    source: str
    bytes_done: int
    bytes_total: int | None
    lines: int
    rows: int


ProgressCallback = Callable[[Progress], None]


class Token:
    """What one distinct input item (as bytes) turned out to be, plus its pending hit count."""

    __slots__ = ("bounds", "entry", "hits", "kind", "reason", "tail", "text")

    def __init__(self, kind: int, text: str = "", reason: str = "") -> None:
        self.kind = kind
        self.text = text
        self.reason = reason
        self.entry: Entry | None = None
        self.tail = b""
        self.hits = 0
        self.bounds: tuple[IPAddress, IPAddress] | None = None


_SKIP = Token(SKIP)
_OVERLONG_REASON = "line longer than {} bytes"


def run(
    service: GeoService,
    inputs: Sequence[Input],
    options: Options,
    output: BinaryIO | str | Path,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Summary:
    """Enrich ``inputs`` into ``output``; return the summary. Raise ``BulkError`` when stopped.

    ``progress`` is called after every batch (about 1 MiB of input); ``should_cancel`` is
    checked at the same points and, when it returns true, the run stops with ``Cancelled``.
    A path ``output`` is written to ``<path>.partial`` and renamed only on success.
    """
    if not inputs:
        raise BulkError("no inputs given")
    if sum(1 for item in inputs if str(item) == "-") > 1:
        raise BulkError("stdin ('-') can be read only once")
    if options.input_format not in INPUT_FORMATS:
        raise BulkError(f"unknown input format {options.input_format!r}")
    if options.max_expand < 1:
        raise BulkError("--max-expand must be at least 1")
    if isinstance(output, str | Path) and not _special_file(Path(output)):
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            handle = partial.open("wb")
        except OSError as exc:
            raise BulkError(f"cannot write {target}: {exc.strerror or exc}") from None
        try:
            with handle:
                summary = BulkRun(service, options, handle, progress, should_cancel).run(inputs)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        return summary
    if isinstance(output, str | Path):
        try:
            with Path(output).open("wb") as handle:
                return BulkRun(service, options, handle, progress, should_cancel).run(inputs)
        except OSError as exc:
            raise BulkError(f"cannot write {output}: {exc.strerror or exc}") from None
    return BulkRun(service, options, output, progress, should_cancel).run(inputs)


def _special_file(path: Path) -> bool:
    """True for /dev/null, FIFOs and the like, which are written in place."""
    return path.exists() and not path.is_file()


class BulkRun:
    """The state of one run (one writer, one cache, one summary)."""

    def __init__(
        self,
        service: GeoService,
        options: Options,
        out: BinaryIO,
        progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.options = options
        self.lookup = CachedLookup(service, options.lang, options.cache_size)
        self.columns = columns_for(options.fields, options.unique)
        self.writer = RowWriter(out, options.output_format, self.columns)
        self.progress = progress
        self.should_cancel = should_cancel
        self.summary = Summary()
        self.memo: dict[bytes, Token] = {}
        self._generation = self.lookup.generation
        self.seen: dict[str, int] = {}
        self.facet_hits: Counter[int] = Counter()
        self._done_bytes = 0
        self._total_bytes: int | None = 0

    # -- driving -------------------------------------------------------------------------------
    def run(self, inputs: Sequence[Input]) -> Summary:
        """Process every input in order, then write unique rows (if asked) and the summary."""
        started = time.monotonic()
        self._total_bytes = _total_size(inputs)
        try:
            for item in inputs:
                self._run_source(item)
            self._fold(list(self.memo.values()))
            if self.options.unique:
                self._write_unique()
            self.writer.close()
        finally:
            self.lookup.close()
        summary = self.summary
        summary.seconds = round(time.monotonic() - started, 3)
        summary.rows = self.writer.rows
        summary.reserved = self.facet_hits[RESERVED]
        summary.not_found = self.facet_hits[NOT_FOUND]
        summary.located = sum(
            count for facet, count in self.facet_hits.items() if facet >= FIRST_PLACE
        )
        summary.valid = summary.located + summary.reserved + summary.not_found
        summary.distinct_ips = len(self.seen)
        summary.top = top_places(self.lookup.facets, self.facet_hits, self.options.top)
        return summary

    def _run_source(self, item: Input) -> None:
        source = open_source(item)
        name = source.name
        self.summary.sources.append(name)
        try:
            batches = read_batches(source, self.options.max_line)
            first = next(batches, None)
            if first is None:
                self.summary.input_formats[name] = "empty"
                self.summary.warnings.append(f"{name}: empty input")
                return
            fmt = self._format(name, first)
            self.summary.input_formats[name] = fmt
            extract, simple, header_pending = self._extractor(name, fmt, first)
            head = self.writer.head(name)
            lineno = 0
            for batch in _chain(first, batches):
                lines = batch
                if header_pending:
                    lines, lineno, extract = self._take_header(name, batch, lineno)
                    header_pending = extract is None
                    if extract is None:
                        continue
                self._batch(name, head, lines, lineno, extract, simple, fmt)
                lineno += len(lines)
                self._report(source)
        finally:
            consumed = source.position()
            if consumed is None or source.size is not None:
                consumed = source.size or 0
            self._done_bytes += consumed
            self.summary.bytes_read += consumed
            source.close()

    def _format(self, name: str, first: list[bytes | None]) -> str:
        wanted = self.options.input_format
        if wanted != "auto":
            return wanted
        found = detect(first, self.options.ip_column)
        if found is None:
            self.summary.warnings.append(
                f"{name}: format not recognised (not IPs, CIDRs, an access log, JSON lines or "
                "CSV with an IP column); every line is checked as an IP list"
            )
            return "ips"
        return found

    def _extractor(
        self, name: str, fmt: str, first: list[bytes | None]
    ) -> tuple[Extractor | None, bool, bool]:
        if fmt == "log":
            return log_client, True, False
        if fmt in ("ips", "cidrs"):
            return list_item, True, False
        if fmt == "csv":
            return None, False, True
        path = self.options.ip_field
        if not path:
            path = _guess_json_field(first)
            if path is None:
                raise BulkError(f"{name}: no IP field found in the JSON lines; use --ip-field")
        return json_extractor(tuple(path.split("."))), False, False

    def _take_header(
        self, name: str, lines: list[bytes | None], lineno: int
    ) -> tuple[list[bytes | None], int, Extractor | None]:
        for index, line in enumerate(lines):
            if line is None:
                raise BulkError(f"{name}: the CSV header line is too long")
            if line.strip() and not line.startswith(b"#"):
                extract = csv_extractor(csv_header(line), self.options.ip_column, name)
                self.summary.lines += index + 1
                self.summary.skipped += index + 1
                return lines[index + 1 :], lineno + index + 1, extract
        self.summary.lines += len(lines)
        self.summary.skipped += len(lines)
        return [], lineno + len(lines), None

    def _report(self, source: Source) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancelled")
        if self.progress is not None:
            position = source.position() or 0
            self.progress(
                Progress(
                    source=source.name,
                    bytes_done=self._done_bytes + position,
                    bytes_total=self._total_bytes or None,
                    lines=self.summary.lines,
                    rows=self.writer.rows,
                )
            )

    def set_total_bytes(self, total: int | None) -> None:
        """Announce the total input size for progress reports (``None`` when unknown)."""
        self._total_bytes = total

    # -- one batch -----------------------------------------------------------------------------
    def _batch(
        self,
        name: str,
        head: bytes,
        lines: list[bytes | None],
        lineno: int,
        extract: Extractor | None,
        simple: bool,
        fmt: str,
    ) -> None:
        assert extract is not None
        self.summary.lines += len(lines)
        tokens: list[bytes | Token]
        if simple:
            tokens = [
                _overlong(self.options.max_line) if line is None else extract(line)
                for line in lines
            ]
        else:
            tokens = []
            for line in lines:
                if line is None:
                    tokens.append(_overlong(self.options.max_line))
                    continue
                try:
                    tokens.append(extract(line))
                except Unparseable as exc:
                    tokens.append(Token(BAD, reason=str(exc)))
        if self.lookup.generation != self._generation:
            # the databases were reloaded: forget answers from the old files
            self._generation = self.lookup.generation
            self._fold(list(self.memo.values()))
            self.memo.clear()
        self._resolve(tokens, ranges=fmt in ("ips", "cidrs"))
        memo = self.memo
        unique = self.options.unique
        rows: list[bytes] = []
        append = rows.append
        line_format = self.writer.line_format if self.writer.has_line else None
        skipped = 0
        for line, item in zip(lines, tokens, strict=True):
            lineno += 1
            token = memo[item] if type(item) is bytes else item
            kind = token.kind  # type: ignore[union-attr]
            if kind == IP:
                token.hits += 1  # type: ignore[union-attr]
                if not unique:
                    if line_format is None:
                        append(head + token.tail)  # type: ignore[union-attr]
                    else:
                        append(head + line_format % lineno + token.tail)  # type: ignore[union-attr]
            elif kind == SKIP:
                skipped += 1
            elif kind == BAD:
                self._bad(name, lineno, token.reason, line)  # type: ignore[union-attr]
            else:
                self.writer.extend(rows)
                rows = []
                append = rows.append
                self._range_rows(head, lineno, token)  # type: ignore[arg-type]
        self.summary.skipped += skipped
        self.writer.extend(rows)
        if len(memo) > self.options.cache_size:
            self._evict(len(memo) - self.options.cache_size // 2)

    def _resolve(self, tokens: list[bytes | Token], ranges: bool) -> None:
        memo = self.memo
        missing = dict.fromkeys(item for item in tokens if type(item) is bytes and item not in memo)
        if not missing:
            return
        pending: list[tuple[bytes, Token]] = []
        texts: list[str] = []
        for raw in missing:
            assert isinstance(raw, bytes)
            if not raw:
                memo[raw] = _SKIP
                continue
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                memo[raw] = Token(BAD, reason="not an IP address")
                continue
            if ranges and ("/" in text or "-" in text):
                memo[raw] = self._range_token(text)
                continue
            pending.append((raw, Token(IP, text)))
            texts.append(text)
        entries = self.lookup.get_texts(texts)
        unique = self.options.unique
        seen = self.seen
        for (raw, token), entry in zip(pending, entries, strict=True):
            if entry is None:
                memo[raw] = Token(BAD, reason="not an IP address")
                continue
            token.entry = entry
            if entry.key not in seen:
                seen[entry.key] = 0
            if not unique:
                token.tail = self.writer.tail(token.text, entry)
            memo[raw] = token

    def _range_token(self, text: str) -> Token:
        try:
            bounds = parse_range(text)
        except BulkError as exc:
            return Token(BAD, reason=str(exc))
        if bounds is None:
            return Token(BAD, reason="not an IP address, CIDR or range")
        token = Token(RANGE, text)
        token.bounds = bounds
        return token

    def _evict(self, count: int) -> None:
        victims = []
        for key in self.memo:
            victims.append(key)
            if len(victims) >= count:
                break
        self._fold([self.memo.pop(key) for key in victims])

    def _fold(self, tokens: list[Token]) -> None:
        """Move pending hit counts of tokens into the per-IP and per-place totals."""
        seen = self.seen
        facet_hits = self.facet_hits
        for token in tokens:
            if token.hits and token.entry is not None:
                seen[token.entry.key] += token.hits
                facet_hits[token.entry.facet] += token.hits
                token.hits = 0

    def _count(self, entry: Entry) -> None:
        self.seen[entry.key] = self.seen.get(entry.key, 0) + 1
        self.facet_hits[entry.facet] += 1

    def _bad(self, name: str, lineno: int, reason: str, line: bytes | None) -> None:
        self.summary.unparseable += 1
        if len(self.summary.unparseable_lines) < MAX_SAMPLES:
            text = "" if line is None else line[:200].decode("utf-8", "replace")
            self.summary.unparseable_lines.append(BadLine(name, lineno, reason, text))

    # -- CIDRs and ranges ----------------------------------------------------------------------
    def _range_rows(self, head: bytes, lineno: int, token: Token) -> None:
        assert token.bounds is not None
        first, last = token.bounds
        rows: list[bytes] = []
        count = 0
        for entries in self._range_entries(lineno, token.text, first, last):
            for entry in entries:
                count += 1
                self._count(entry)
                if not self.options.unique:
                    tail = self.writer.tail(token.text, entry)
                    if self.writer.has_line:
                        rows.append(head + self.writer.line_format % lineno + tail)
                    else:
                        rows.append(head + tail)
            self.writer.extend(rows)
            rows = []

    def _range_entries(
        self, lineno: int, text: str, first: IPAddress, last: IPAddress
    ) -> Iterator[list[Entry]]:
        lookup = self.lookup
        start, end = int(first), int(last)
        make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
        if self.options.expand:
            size = end - start + 1
            if size > self.options.max_expand:
                raise BulkError(
                    f"line {lineno}: {text} has {size:,} addresses, more than "
                    f"--max-expand {self.options.max_expand:,}; raise --max-expand, or drop "
                    "--expand to get one row per database network"
                )
            for chunk in range(start, end + 1, _EXPAND_CHUNK):
                stop = min(end + 1, chunk + _EXPAND_CHUNK)
                addresses: list[IPAddress] = [make(number) for number in range(chunk, stop)]
                yield lookup.get_many(addresses)
            return
        found = False
        batch = []
        for address in lookup.networks(first, last):
            batch.append(address)
            if len(batch) >= _EXPAND_CHUNK:
                found = True
                yield lookup.get_many(batch)
                batch = []
        if batch or not found:
            yield lookup.get_many(batch or [first])

    # -- unique mode -----------------------------------------------------------------------------
    def _write_unique(self) -> None:
        keys = list(self.seen)
        for offset in range(0, len(keys), 8192):
            chunk = keys[offset : offset + 8192]
            addresses = [parse_ip(key) for key in chunk]
            entries = self.lookup.get_many(addresses)  # type: ignore[arg-type]
            self.writer.extend(
                [self.writer.unique_row(entry, self.seen[entry.key]) for entry in entries]
            )


def _chain(
    first: list[bytes | None], rest: Iterator[list[bytes | None]]
) -> Iterator[list[bytes | None]]:
    yield first
    yield from rest


def _total_size(inputs: Sequence[Input]) -> int | None:
    total = 0
    for item in inputs:
        if isinstance(item, tuple):
            size = _stream_size(item[1])
            if size is None:
                return None
            total += size
            continue
        if str(item) == "-":
            return None
        try:
            total += Path(item).stat().st_size
        except OSError:
            return None
    return total


def _stream_size(stream: BinaryIO) -> int | None:
    """The size of a stream that is a regular file (an opened upload), else ``None``."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _overlong(limit: int) -> Token:
    return Token(BAD, reason=_OVERLONG_REASON.format(limit))


def _guess_json_field(sample: list[bytes | None]) -> str | None:
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
