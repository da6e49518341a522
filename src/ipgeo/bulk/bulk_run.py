"""One bulk run: its inputs read in batches, then unique rows (if asked) and the summary."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from ipgeo.bulk.batches import BatchProcessor
from ipgeo.bulk.errors import BulkError, Cancelled
from ipgeo.bulk.lookup import FIRST_PLACE, NOT_FOUND, RESERVED
from ipgeo.bulk.malloc import keep_freed_memory
from ipgeo.bulk.options import Options, Progress, ProgressCallback
from ipgeo.bulk.parsing import (
    Extractor,
    csv_extractor,
    csv_header,
    detect,
    guess_json_field,
    json_extractor,
    list_item,
    log_client,
)
from ipgeo.bulk.sources import Input, LineBatch, Source, open_source, read_batches, total_size
from ipgeo.bulk.summary import Summary, top_places
from ipgeo.geo import GeoService
from ipgeo.geo.queries import parse_ip


class BulkRun(BatchProcessor):
    """The state of one run (one writer, one cache, one summary) and its progress."""

    def __init__(
        self,
        service: GeoService,
        options: Options,
        out: BinaryIO,
        progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        super().__init__(service, options, out)
        self.progress = progress
        self.should_cancel = should_cancel
        self._done_bytes = 0
        self._total_bytes: int | None = 0

    # -- driving -------------------------------------------------------------------------------
    def run(self, inputs: Sequence[Input]) -> Summary:
        """Process every input in order, then write unique rows (if asked) and the summary."""
        started = time.monotonic()
        keep_freed_memory()
        self._total_bytes = total_size(inputs)
        # The cyclic garbage collector would keep walking the run's many long-lived objects
        # (cached tokens, rows, records: a quarter of the time of a run over distinct IPs);
        # they form no reference cycles, so reference counting frees them alone.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for item in inputs:
                self._run_source(item)
            self._fold(list(self.memo.values()))
            if self.options.unique:
                self._write_unique()
            self.writer.close()
        finally:
            if collecting:
                gc.enable()
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
        summary.distinct_ips = len(self.seen) if self.options.unique else len(self.distinct)
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
            extract, simple, header_pending = self._extractor(name, fmt, first.lines)
            head = self.writer.head(name)
            lineno = 0
            for read in _chain(first, batches):
                batch = read
                if header_pending:
                    lines, lineno, extract = self._take_header(name, read.lines, lineno)
                    header_pending = extract is None
                    if extract is None:
                        continue
                    batch = LineBatch(None, 0, read.max_line, lines)
                lineno += self._batch(name, head, batch, lineno, extract, simple, fmt)
                self._report(source)
        finally:
            consumed = source.position()
            if consumed is None or source.size is not None:
                consumed = source.size or 0
            self._done_bytes += consumed
            self.summary.bytes_read += consumed
            source.close()

    def _format(self, name: str, first: LineBatch) -> str:
        wanted = self.options.input_format
        if wanted != "auto":
            return wanted
        found = detect(first.lines, self.options.ip_column)
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
            path = guess_json_field(first)
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


def _chain(first: LineBatch, rest: Iterator[LineBatch]) -> Iterator[LineBatch]:
    yield first
    yield from rest
