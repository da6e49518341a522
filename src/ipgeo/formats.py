"""Rendering lookup answers as JSON, XML, CSV or plain text (shared by the API and the CLI)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

FORMATS: dict[str, str] = {
    "json": "application/json",
    "xml": "application/xml",
    "csv": "text/csv",
    "text": "text/plain",
}


def cell(value: Any) -> str:
    """Render one value for CSV/text: empty for null, lower-case booleans, ``;``-joined lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(str(item) for item in value)
    return str(value)


def to_json(data: Any) -> bytes:
    """Serialize to compact JSON bytes."""
    return orjson.dumps(data)


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> str:
    """Render rows as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(columns)
    writer.writerow(names)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in names])
    return out.getvalue()


def to_text(row: Mapping[str, Any]) -> str:
    """Render one row as ``key: value`` lines."""
    width = max((len(key) for key in row), default=0)
    return "".join(f"{key.ljust(width)}  {cell(value)}\n" for key, value in row.items())


def _escape(text: str) -> str:
    """``xml.sax.saxutils.escape`` (importing xml.sax pulls in urllib.request, http, ssl)."""
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def _xml_value(key: str, value: Any) -> str:
    if value is None:
        return f"<{key}/>"
    if isinstance(value, list | tuple):
        items = "".join(f"<address>{_escape(str(item))}</address>" for item in value)
        return f"<{key}>{items}</{key}>"
    return f"<{key}>{_escape(cell(value))}</{key}>"


def to_xml(row: Mapping[str, Any], root: str = "lookup") -> str:
    """Render one row as a small XML document."""
    body = "".join(_xml_value(key, value) for key, value in row.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>\n'


def render(row: Mapping[str, Any], fmt: str) -> tuple[bytes, str]:
    """Render one row in ``fmt``; return ``(body, content type)``."""
    if fmt == "xml":
        body = to_xml(row).encode()
    elif fmt == "csv":
        body = to_csv([row], row.keys()).encode()
    elif fmt == "text":
        body = to_text(row).encode()
    else:
        body = to_json(row)
    media = FORMATS.get(fmt, FORMATS["json"])
    charset = "" if media == "application/json" else "; charset=utf-8"
    return body, media + charset
