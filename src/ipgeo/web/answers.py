"""The answer cache in front of single lookups (``/api/v1/lookup/<ip>``, ``/json``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from flask import current_app

from ipgeo.answers import AnswerCache, CachedAnswer, cached_answer
from ipgeo.geo import LookupResult
from ipgeo.metrics import metrics


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
    """The answer for ``key``: cached, or made by ``lookup`` (which may raise ``GeoError``).

    Returns the answer and, when just computed, its rendered body and content type (a
    cached answer renders itself with a fresh clock). Only IP lookups are kept: names
    resolve differently over time.
    """
    cache = answer_cache()
    recorded = metrics()
    generation = 0
    if cache is not None:
        generation = cache.generation()
        answer = cache.get(key, generation)
        if answer is not None:
            recorded.lookup_cache.labels("hit").inc()
            recorded.lookups.labels("found").inc()
            return answer, None, answer.content_type
        recorded.lookup_cache.labels("miss").inc()
    result = lookup()
    zone = (result.time_zone, result.time_zone_source or "database") if result.time_zone else None
    answer, body, content_type = cached_answer(result.as_dict(fields), fmt, zone, keep_row)
    if cache is not None and result.addresses is None:
        cache.put(key, generation, answer)
    return answer, body, content_type
