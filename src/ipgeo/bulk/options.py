"""The options of a bulk run and the progress reports it makes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ipgeo.bulk.sources import MAX_LINE


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
    # Keys a run keeps resolved (evicted ones are resolved again when met): room for the
    # ~93,000 addresses of the 2M-line benchmark log (17 % less CPU than 65,536 there; input
    # of distinct addresses only: 1-2 % more CPU and 12 MB more memory).
    cache_size: int = 131_072
    max_line: int = MAX_LINE
    max_rows: int | None = None  # stop with ``TooLarge`` past this many rows (None: no bound)
    max_input: int | None = None  # ... or past this many bytes of one decompressed input


@dataclass(frozen=True)
class Progress:
    """Where a run is: the current source, bytes of all sized inputs, lines and rows so far."""

    source: str
    bytes_done: int
    bytes_total: int | None
    lines: int
    rows: int


ProgressCallback = Callable[[Progress], None]
