"""Process-wide logging: JSON lines for log collectors or readable text (no Flask)."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# The id of the request being served by this thread/task, added to every log line.
request_id_var: ContextVar[str | None] = ContextVar("ipgeo_request_id", default=None)

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# What nginx escapes in its access log: control characters, quote, backslash and every byte
# from 0x7f up. WSGI gives paths and headers as Latin-1 text, one character per byte.
_BYTE_ESCAPES = {code: f"\\x{code:02X}" for code in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100))}


def _escape_wide(char: str) -> str:
    if ord(char) < 0x100:
        return char
    return "".join(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def escape_field(value: str) -> str:
    """``value`` as one safe field of a text log line: printable ASCII, ``\\xHH`` otherwise."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    escaped = value.translate(_BYTE_ESCAPES)
    if escaped.isascii():
        return escaped
    return "".join(_escape_wide(char) for char in escaped)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            data["request_id"] = request_id
        data.update(_extra_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message`` plus the request id, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as readable text."""
        text = super().format(record)
        request_id = request_id_var.get()
        if request_id is not None and "request_id" not in record.__dict__:
            text += f" [{request_id}]"
        return text


class _IpgeoHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so set-up can run more than once."""


def setup_logging(
    log_format: str = "text", level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send all logs to ``stream`` (stderr) as ``json`` lines or ``text``; idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _IpgeoHandler)]:
        root.removeHandler(handler)
    handler = _IpgeoHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
