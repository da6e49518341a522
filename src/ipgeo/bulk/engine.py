"""The bulk enrichment engine: inputs in, rows and a ``Summary`` out (no Flask, no click)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ipgeo.bulk.bulk_run import BulkRun
from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.options import Options, Progress, ProgressCallback
from ipgeo.bulk.parsing import INPUT_FORMATS
from ipgeo.bulk.sources import Input
from ipgeo.bulk.summary import Summary
from ipgeo.geo import GeoService

__all__ = ["Options", "Progress", "ProgressCallback", "run"]


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
    check_run(inputs, options)
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


def check_run(inputs: Sequence[Input], options: Options) -> None:
    """Raise ``BulkError`` for inputs and options no run can start with."""
    if not inputs:
        raise BulkError("no inputs given")
    if sum(1 for item in inputs if str(item) == "-") > 1:
        raise BulkError("stdin ('-') can be read only once")
    if options.input_format not in INPUT_FORMATS:
        raise BulkError(f"unknown input format {options.input_format!r}")
    if options.max_expand < 1:
        raise BulkError("--max-expand must be at least 1")


def _special_file(path: Path) -> bool:
    """True for /dev/null, FIFOs and the like, which are written in place."""
    return path.exists() and not path.is_file()
