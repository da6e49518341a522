"""How one input is read, settled once from its first lines: format, JSON field, CSV header.

A single run settles an input as it starts reading it; a chunked run settles it while cutting
it (``chunks.split``) and hands the result (``SourceFormat``) to every chunk of the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.options import Options
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


@dataclass(frozen=True)
class SourceFormat:
    """The settled reading of one input (JSON-ready: ``to_dict`` / ``from_dict``)."""

    name: str  # the input's display name, as in rows and the summary
    input_format: str  # log, ips, cidrs, jsonl or csv
    ip_field: str | None = None  # jsonl: the dotted path of the IP
    csv_header: str | None = None  # csv: the header line's bytes, decoded as latin-1
    header_line: int = 0  # csv: the 1-based number of the header line (0: not known)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceFormat:
        """The inverse of ``to_dict``."""
        return cls(**data)

    def extractor(self, options: Options) -> tuple[Extractor | None, bool]:
        """The extractor of the input's lines (``None`` for CSV before its header is read),
        and whether it is a simple one (log, list: keyed in blocks)."""
        fmt = self.input_format
        if fmt == "log":
            return log_client, True
        if fmt in ("ips", "cidrs"):
            return list_item, True
        if fmt == "csv":
            if self.csv_header is None:
                return None, False
            header = csv_header(self.csv_header.encode("latin-1"))
            return csv_extractor(header, options.ip_column, self.name), False
        assert self.ip_field is not None
        return json_extractor(tuple(self.ip_field.split("."))), False


def settle_format(name: str, first: list[bytes | None], options: Options) -> tuple[str, str | None]:
    """The input format of an input from its first lines, and a warning when it is a guess."""
    wanted = options.input_format
    if wanted != "auto":
        return wanted, None
    found = detect(first, options.ip_column)
    if found is None:
        warning = (
            f"{name}: format not recognised (not IPs, CIDRs, an access log, JSON lines or "
            "CSV with an IP column); every line is checked as an IP list"
        )
        return "ips", warning
    return found, None


def settle_json_field(name: str, first: list[bytes | None], options: Options) -> str:
    """The dotted path of the IP in JSON lines: ``--ip-field`` or guessed from the first lines."""
    path = options.ip_field or guess_json_field(first)
    if not path:
        raise BulkError(f"{name}: no IP field found in the JSON lines; use --ip-field")
    return path


def header_at(name: str, lines: list[bytes | None]) -> int | None:
    """The index of the CSV header in ``lines`` (the first line neither blank nor a comment)."""
    for index, line in enumerate(lines):
        if line is None:
            raise BulkError(f"{name}: the CSV header line is too long")
        if line.strip() and not line.startswith(b"#"):
            return index
    return None
