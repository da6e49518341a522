"""The app's answer cache in front of single lookups (``/api/v1/lookup/<ip>``, ``/json``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from flask import current_app

from ipgeo import answers
from ipgeo.answers import AnswerCache, CachedAnswer
from ipgeo.geo import LookupResult


def answer_cache() -> AnswerCache | None:
    """The app's answer cache (``None`` when turned off or answers depend on reverse DNS)."""
    cache: AnswerCache | None = current_app.extensions.get("ipgeo.answers")
    if cache is None or cache.service.reverse_dns:
        return None
    return cache


def cached_lookup(
    key: Hashable,
    fields: tuple[str, ...] | None,
    fmt: str,
    lookup: Callable[[], LookupResult],
    keep_row: bool = False,
) -> tuple[CachedAnswer, bytes | None, str]:
    """``ipgeo.answers.cached_lookup`` with the app's cache."""
    return answers.cached_lookup(answer_cache(), key, fields, fmt, lookup, keep_row)
