"""The options a job is submitted with, validated before anything is queued."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ipgeo.bulk import INPUT_FORMATS, BulkError, Options
from ipgeo.bulk.writers import columns_for

_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{2,4})?$")
_PATH_RE = re.compile(r"^[^\s]{1,200}$")
MODES = ("per-line", "unique")
# The engine ranks this many countries, so that the world map gets every one of them.
MAP_TOP = 300


class JobOptionError(ValueError):
    """A submitted option is invalid (a 400 for the API)."""


@dataclass(frozen=True)
class JobOptions:
    """What a job does with its input: the engine's options as JSON-ready values."""

    input_format: str = "auto"
    fields: tuple[str, ...] | None = None
    unique: bool = False
    ip_field: str | None = None
    ip_column: str | None = None
    expand: bool = False
    lang: str | None = None
    top: int = 10

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> JobOptions:
        """Options from form fields or query parameters; raise ``JobOptionError``."""
        fmt = (values.get("input_format") or "auto").strip().lower()
        if fmt not in INPUT_FORMATS:
            raise JobOptionError(f"input_format must be one of {', '.join(INPUT_FORMATS)}")
        mode = (values.get("mode") or "per-line").strip().lower().replace("_", "-")
        if mode not in MODES:
            raise JobOptionError("mode must be per-line or unique")
        raw_fields = (values.get("fields") or "").strip()
        fields = tuple(name.strip() for name in raw_fields.split(",") if name.strip()) or None
        options = cls(
            input_format=fmt,
            fields=fields,
            unique=mode == "unique",
            ip_field=_optional_name(values, "ip_field"),
            ip_column=_optional_name(values, "ip_column"),
            expand=(values.get("expand") or "").strip().lower() in {"1", "true", "yes", "on"},
            lang=_language(values.get("lang")),
            top=_top(values.get("top")),
        )
        try:
            columns_for(options.fields, options.unique)
        except BulkError as exc:
            raise JobOptionError(str(exc).replace("--", "")) from None
        return options

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobOptions:
        """Rebuild options stored with a job."""
        values = dict(data)
        if values.get("fields") is not None:
            values["fields"] = tuple(values["fields"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the job and shown by the API."""
        data = asdict(self)
        data["fields"] = list(self.fields) if self.fields is not None else None
        return data

    def engine_options(self) -> Options:
        """The bulk engine's options: NDJSON out, every country ranked for the map."""
        return Options(
            output_format="ndjson",
            fields=self.fields,
            unique=self.unique,
            input_format=self.input_format,
            ip_field=self.ip_field,
            ip_column=self.ip_column,
            expand=self.expand,
            top=max(self.top, MAP_TOP),
            lang=self.lang,
        )

    def columns(self) -> tuple[str, ...]:
        """The result's columns, in order."""
        return columns_for(self.fields, self.unique)


def _optional_name(values: Mapping[str, str], key: str) -> str | None:
    value = (values.get(key) or "").strip()
    if not value:
        return None
    if not _PATH_RE.match(value):
        raise JobOptionError(f"{key} must be a name without spaces, at most 200 characters")
    return value


def _language(raw: str | None) -> str | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not _LANG_RE.match(value):
        raise JobOptionError("lang must be a language code such as 'de' or 'pt-BR'")
    return value


def _top(raw: str | None) -> int:
    value = (raw or "").strip()
    if not value:
        return 10
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 100:
        raise JobOptionError("top must be a whole number from 1 to 100")
    return int(value)
