"""One bulk run, composed: reader (``sources``, ``parsing``) → keyer → resolver → writer.

Each batch of lines is keyed (``Keyer``), new IP keys are resolved through the kernel
(``Resolver``) and rendered once (``Renderer``), and the rows of the lines are joined from
their keys' row ends (``rows_block``). Counts go to a ``Tally``; unique rows and the summary
are written at the end.
"""

from __future__ import annotations

import gc
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO

from ipgeo.bulk.blocks import rows_block
from ipgeo.bulk.errors import Cancelled, TooLarge
from ipgeo.bulk.keyer import BlockRows, Keyer, Resolved
from ipgeo.bulk.malloc import keep_freed_memory
from ipgeo.bulk.options import Options, Progress, ProgressCallback
from ipgeo.bulk.parsing import Extractor, csv_extractor, csv_header
from ipgeo.bulk.ranges import range_addresses
from ipgeo.bulk.rendering import Renderer
from ipgeo.bulk.resolver import Resolver, Rows, canonical_ips
from ipgeo.bulk.settle import SourceFormat, header_at, settle_format, settle_json_field
from ipgeo.bulk.sources import Input, LineBatch, Source, open_source, read_batches, total_size
from ipgeo.bulk.summary import MAX_SAMPLES, BadLine, Summary
from ipgeo.bulk.tally import UNCOUNTED, Tally
from ipgeo.bulk.tokens import BAD, IP, RANGE, SKIP, Token
from ipgeo.bulk.writers import WHOLE, Framing, RowWriter, columns_for
from ipgeo.geo import GeoService

_FACET = operator.attrgetter("facet")
_TAIL = operator.attrgetter("tail")
_KIND = operator.attrgetter("kind")
_UNIQUE_CHUNK = 8192


class BulkRun:
    """One run: its parts (keyer, resolver, writer, tally), its summary and its progress."""

    def __init__(
        self,
        service: GeoService,
        options: Options,
        out: BinaryIO,
        progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        now: datetime | None = None,
        framing: Framing = WHOLE,
    ) -> None:
        self.options = options
        self.resolver = Resolver(service, options.lang)
        columns = columns_for(options.fields, options.unique)
        self.writer = RowWriter(
            out,
            options.output_format,
            columns,
            now or datetime.now(UTC),
            per_line=not options.unique,
            max_rows=options.max_rows,
            framing=framing,
        )
        self.renderer = self.writer.renderer
        self.tally = Tally(options.unique)
        new_keys = NewKeys(self.resolver, self.renderer, self.tally, options.unique)
        self.keyer = Keyer(new_keys, options.max_line, self.tally)
        self.summary = Summary()
        self.progress = progress
        self.should_cancel = should_cancel
        self._done_bytes = 0
        self.total_bytes: int | None = 0

    # -- driving -------------------------------------------------------------------------------
    def run(self, inputs: Sequence[Input]) -> Summary:
        """Process every input in order, then write unique rows (if asked) and the summary."""
        started = time.monotonic()
        self.total_bytes = total_size(inputs)
        with without_cyclic_gc():
            for item in inputs:
                self._run_source(item)
            self.close()
        summary = self.finish()
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def close(self) -> None:
        """Fold pending counts, write the unique rows (in unique mode) and finish the output."""
        self.keyer.clear()
        if self.options.unique and self.writer.framing.closes:
            self.write_unique()
        self.writer.close()

    def finish(self) -> Summary:
        """The summary, with the counts of the tally."""
        summary = self.summary
        summary.rows = self.writer.rows
        self.tally.finish(summary, self.resolver.facets, self.options.top)
        return summary

    def _run_source(self, item: Input) -> None:
        source = open_source(item)
        name = source.name
        options = self.options
        self.summary.sources.append(name)
        try:
            batches = read_batches(source, options.max_line, options.max_input)
            first = next(batches, None)
            if first is None:
                self.summary.input_formats[name] = "empty"
                self.summary.warnings.append(f"{name}: empty input")
                return
            fmt, warning = settle_format(name, first.lines, options)
            if warning:
                self.summary.warnings.append(warning)
            self.summary.input_formats[name] = fmt
            field = settle_json_field(name, first.lines, options) if fmt == "jsonl" else None
            self.run_lines(source, _chain(first, batches), SourceFormat(name, fmt, field), 0)
        finally:
            consumed = source.consumed()
            self._done_bytes += consumed
            self.summary.bytes_read += consumed
            source.close()

    def run_lines(
        self, source: Source, batches: Iterator[LineBatch], form: SourceFormat, lineno: int
    ) -> None:
        """Process the lines of ``batches`` (of ``source``, read as ``form`` says), the first
        of which is line ``lineno + 1`` of the input."""
        name = form.name
        fmt = form.input_format
        header_pending = fmt == "csv" and (form.header_line == 0 or lineno < form.header_line)
        extract, simple = (None, False) if header_pending else form.extractor(self.options)
        head = self.writer.head(name)
        for read in batches:
            batch = read
            if header_pending:
                lines, lineno, extract = self._take_header(name, read.lines, lineno)
                header_pending = extract is None
                if extract is None:
                    continue
                batch = LineBatch(None, 0, read.max_line, lines)
            lineno += self._batch(name, head, batch, lineno, extract, simple, fmt)
            self._report(source)

    def _take_header(
        self, name: str, lines: list[bytes | None], lineno: int
    ) -> tuple[list[bytes | None], int, Extractor | None]:
        index = header_at(name, lines)
        if index is None:
            self.summary.lines += len(lines)
            self.summary.skipped += len(lines)
            return [], lineno + len(lines), None
        line = lines[index]
        assert line is not None
        extract = csv_extractor(csv_header(line), self.options.ip_column, name)
        self.summary.lines += index + 1
        self.summary.skipped += index + 1
        return lines[index + 1 :], lineno + index + 1, extract

    def _check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancelled")

    def _report(self, source: Source) -> None:
        self._check_cancel()
        if self.progress is not None:
            position = source.position() or 0
            self.progress(
                Progress(
                    source=source.name,
                    bytes_done=self._done_bytes + position,
                    bytes_total=self.total_bytes or None,
                    lines=self.summary.lines,
                    rows=self.writer.rows,
                )
            )

    # -- one batch -------------------------------------------------------------------------------
    def _batch(
        self,
        name: str,
        head: bytes,
        batch: LineBatch,
        lineno: int,
        extract: Extractor | None,
        simple: bool,
        fmt: str,
    ) -> int:
        """Count, resolve and write the rows of one batch of lines; return its line count."""
        assert extract is not None
        self.tally.fresh.clear()
        if self.resolver.refresh():
            self.keyer.clear()  # the databases were reloaded: forget answers from the old files
        ranges = fmt in ("ips", "cidrs")
        block = None
        if batch.buffer is not None and simple:
            block = self.keyer.key_block(batch, extract, fmt != "log", ranges)
        if block is not None:
            self._block_rows(name, head, batch, lineno, block)
            count = len(block.tails)
        else:
            lines = batch.lines
            found, all_ips = self.keyer.tokens(lines, extract, simple, ranges, fmt == "log")
            if all_ips:
                for token, hits in Counter(found).items():
                    token.hits += hits
                self._block_rows(name, head, batch, lineno, BlockRows(list(map(_TAIL, found))))
            else:
                self._rows(name, head, lines, lineno, found)
            count = len(lines)
        self.keyer.bound(self.options.cache_size)
        return count

    def _block_rows(
        self, name: str, head: bytes, batch: LineBatch, lineno: int, block: BlockRows
    ) -> None:
        """Count and write the rows of a block of lines (none for its rowless lines)."""
        tails, rowless, keyed = block
        self.summary.lines += len(tails)
        for index, token in rowless:
            if token.kind == SKIP:
                self.summary.skipped += 1
            else:
                line = keyed.line(batch.buffer, index) if keyed and batch.buffer else None
                self._bad(name, lineno + 1 + index, token.reason, line)
        if not self.options.unique:
            line_format = self.writer.line_format if self.writer.has_line else None
            positions = [index for index, _ in rowless]
            rows = rows_block(head, line_format, lineno + 1, tails, positions)
            self.writer.extend_block(rows, len(tails) - len(rowless))

    def _rows(
        self, name: str, head: bytes, lines: list[bytes | None], lineno: int, found: list[Token]
    ) -> None:
        """The rows of a batch whose lines are not all IPs, line after line."""
        self.summary.lines += len(lines)
        unique = self.options.unique
        line_format = self.writer.line_format if self.writer.has_line else None
        rows: list[bytes] = []
        skipped = 0
        # Unique rows come in the order of the lines that first had each IP: the IPs met in
        # this batch's keys go after those of the ranges on lines before them.
        seen = self.tally.seen if unique and RANGE in set(map(_KIND, found)) else None
        if seen is not None:
            self.tally.forget_fresh()
        for line, token in zip(lines, found, strict=True):
            lineno += 1
            kind = token.kind
            if kind == IP:
                token.hits += 1
                if seen is not None:
                    seen.setdefault(token.ip, 0)
                if not unique:
                    number = b"" if line_format is None else line_format % lineno
                    rows.append(head + number + token.tail)
            elif kind == SKIP:
                skipped += 1
            elif kind == BAD:
                self._bad(name, lineno, token.reason, line)
            else:
                self.writer.extend(rows)
                rows = []
                self._range_rows(head, lineno, token)
        self.summary.skipped += skipped
        self.writer.extend(rows)

    def _bad(self, name: str, lineno: int, reason: str, line: bytes | None) -> None:
        self.summary.unparseable += 1
        if len(self.summary.unparseable_lines) < MAX_SAMPLES:
            text = "" if line is None else line[:200].decode("utf-8", "replace")
            self.summary.unparseable_lines.append(BadLine(name, lineno, reason, text))

    def _range_rows(self, head: bytes, lineno: int, token: Token) -> None:
        """The rows of a CIDR or range line: one per address looked up in it.

        One line can cover millions of networks, so cancel and the row bound are checked for
        every chunk of addresses, not only between batches of lines.
        """
        assert token.bounds is not None
        options = self.options
        number = self.writer.line_format % lineno if self.writer.has_line else b""
        for addresses in range_addresses(self.resolver, options, lineno, token.text, *token.bounds):
            self._check_cancel()
            if options.unique:  # the addresses are looked up when their rows are written
                for ip, _, _ in addresses:
                    self.tally.add(ip, UNCOUNTED)
                if options.max_rows is not None and len(self.tally.seen) > options.max_rows:
                    raise TooLarge("rows", options.max_rows)
                continue
            rows = self.resolver.resolve(addresses)
            answers = self.resolver.answers
            for ip, answer in zip(rows.ips, rows.answers, strict=True):
                self.tally.add(ip, answers[answer].facet)
            tails = self.renderer.tails(answers, rows, [token.text] * len(addresses))
            self.writer.extend([head + number + tail for tail in tails])

    # -- unique mode -----------------------------------------------------------------------------
    def write_unique(self) -> None:
        """Write one row per IP of ``tally.seen``, with its hits, in first-seen order."""
        seen = self.tally.seen
        keys = list(seen)
        opening = self.writer.head("")
        for offset in range(0, len(keys), _UNIQUE_CHUNK):
            self._check_cancel()
            chunk = keys[offset : offset + _UNIQUE_CHUNK]
            self.resolver.refresh()
            rows = self.resolver.resolve_texts(chunk).rows  # canonical IPs: all of them
            hits = list(map(seen.__getitem__, chunk))
            answers = self.resolver.answers
            self.tally.count_facets(list(map(_FACET, map(answers.__getitem__, rows.answers))), hits)
            tails = self.renderer.tails(answers, rows, hits=hits)
            self.writer.extend([opening + tail for tail in tails])


class NewKeys:
    """Resolves, renders and counts the new IP keys of a run (the keyer's ``resolve_texts``):
    an object of its own, so that the run's keyer holds no reference back to the run (a cycle
    that kept every run's answers alive until the next full collection, at exit for the CLI)."""

    def __init__(self, resolver: Resolver, renderer: Renderer, tally: Tally, unique: bool) -> None:
        self.resolver = resolver
        self.renderer = renderer
        self.tally = tally
        self.unique = unique

    def __call__(self, texts: list[str]) -> Resolved:
        """The IP, summary facet and row end of each text (``""``, -1, ``b""``: no IP); in
        unique mode the IP only (looked up when its row is written)."""
        count = len(texts)
        if self.unique:
            found, at = canonical_ips(texts)
            self.tally.met(found)
            if len(at) == count:
                return Resolved(found, [UNCOUNTED] * count, [b""] * count)
            ips, facets = [""] * count, [-1] * count
            _put(at, (found, [UNCOUNTED] * len(found)), ips, facets)
            return Resolved(ips, facets, [b""] * count)
        rows, positions, packed = self.resolver.resolve_texts(texts)
        if len(positions) == count:
            facets, tails = self._rendered(rows, texts)
            ips = rows.ips
        else:
            ips, facets, tails = [""] * count, [-1] * count, [b""] * count
            inputs = list(map(texts.__getitem__, positions))
            _put(positions, (rows.ips, *self._rendered(rows, inputs)), ips, facets, tails)
        if packed is None:
            self.tally.met([ip for ip in ips if ip] if len(positions) < count else ips)
        elif len(packed) // 4 == len(positions):
            self.tally.met([], packed)
        else:  # the dotted ones as packed, the others (IPv6 texts) one by one
            others = [ip for ip, at in zip(rows.ips, positions, strict=True) if ":" in texts[at]]
            self.tally.met(others, packed)
        return Resolved(ips, facets, tails)

    def _rendered(self, rows: Rows, inputs: list[str]) -> tuple[list[int], list[bytes]]:
        """The summary facets and row ends of resolved rows (``inputs``: the items as written)."""
        answers = self.resolver.answers
        facets = list(map(_FACET, map(answers.__getitem__, rows.answers)))
        return facets, self.renderer.tails(answers, rows, inputs)


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """Run a block without the cyclic garbage collector.

    It would keep walking a run's many long-lived objects (cached tokens, rows, records: a
    quarter of the time of a run over distinct IPs); they form no reference cycles, so
    reference counting frees them alone.
    """
    keep_freed_memory()
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Every object the block made is young to the collector, and its first collection
        # would walk them all: they go to the oldest generation instead, in O(1) time.
        gc.freeze()
        gc.unfreeze()
        if collecting:
            gc.enable()


def _put(positions: Sequence[int], columns: Sequence[list[Any]], *into: list[Any]) -> None:
    """Put the values of ``columns`` at ``positions`` of the lists ``into``."""
    for target, column in zip(into, columns, strict=True):
        for position, value in zip(positions, column, strict=True):
            target[position] = value


def _chain(first: LineBatch, rest: Iterator[LineBatch]) -> Iterator[LineBatch]:
    yield first
    yield from rest
