"""The benchmark's report: ratios within one run, a Markdown table and a JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.http.wrk import WrkResult


@dataclass
class Measurement:
    """One configuration at one connection count."""

    config: str
    label: str
    connections: int
    result: WrkResult | None = None
    error: str | None = None
    load_before: float | None = None  # 1-minute load average just before the run
    ratios: dict[str, float | None] = field(default_factory=dict)


def add_ratios(measurements: list[Measurement], references: tuple[str, ...]) -> None:
    """Set each measurement's ratio to each reference at the same connection count.

    Ratios compare successful answers per second (status < 400), so a configuration that
    answers 502 quickly (an overflowing backlog) does not look faster than one that works.
    """
    rate = {
        (item.config, item.connections): item.result.ok_requests_per_s
        for item in measurements
        if item.result is not None
    }
    for item in measurements:
        for ref in references:
            base = rate.get((ref, item.connections))
            ours = item.result.ok_requests_per_s if item.result else None
            item.ratios[ref] = round(ours / base, 2) if ours is not None and base else None


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown_table(measurements: list[Measurement], references: tuple[str, ...]) -> str:
    """A Markdown table of the run, ready to paste into docs/benchmarks.md."""
    head = ["config", "conns", "req/s", "ok req/s", "p50 ms", "p99 ms", "non-2xx"]
    head += ["socket err c/r/w/t"]
    head += [f"ok vs {ref.upper()}" for ref in references]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in measurements:
        if item.result is None:
            row = [item.label, str(item.connections), f"failed: {item.error}"] + [""] * 5
            row += ["—"] * len(references)
        else:
            res = item.result
            errors = f"{res.connect_errors}/{res.read_errors}/{res.write_errors}/{res.timeouts}"
            row = [
                item.label,
                str(item.connections),
                f"{res.requests_per_s:,.0f}",
                f"{res.ok_requests_per_s:,.0f}",
                _ms(res.p50_ms),
                _ms(res.p99_ms),
                f"{res.non_2xx_3xx:,}",
                errors,
            ]
            row += [_ratio(item.ratios.get(ref)) for ref in references]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def json_document(measurements: list[Measurement], metadata: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, with the run's metadata (command, machine, versions)."""
    return {
        **metadata,
        "results": [
            {
                "config": item.config,
                "label": item.label,
                "connections": item.connections,
                "load_before": item.load_before,
                "error": item.error,
                "wrk": item.result.as_dict() if item.result else None,
                "ratios": item.ratios,
            }
            for item in measurements
        ],
    }
