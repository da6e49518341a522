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
    round: int = 1
    error: str | None = None
    load_before: float | None = None  # 1-minute load average just before the run
    batch: int = 0  # addresses per request in batch mode (0: one GET lookup per request)
    skipped: bool = False  # the configuration cannot run here (error says why)
    ratios: dict[str, float | None] = field(default_factory=dict)
    # server CPU per successful answer as a ratio to each reference's (lower is cheaper)
    cpu_ratios: dict[str, float | None] = field(default_factory=dict)
    # CPU seconds of each server process group (nginx, uwsgi, ...) during the measured run,
    # the wall-clock seconds between the two samples, and the machine's cores
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_window_s: float = 0.0
    cores: int = 1

    @property
    def cpu_us(self) -> dict[str, float]:
        """CPU µs per request of each server process group during the run."""
        requests = self.result.requests if self.result else 0
        if not requests:
            return {}
        return {name: round(value / requests * 1e6, 1) for name, value in self.cpu_s.items()}

    @property
    def cpu_per_ok_answer(self) -> float | None:
        """Server CPU seconds per answer with a status below 400 (fast failures are cheap)."""
        if self.result is None or not self.cpu_s:
            return None
        ok = self.result.requests - self.result.non_2xx_3xx
        return sum(self.cpu_s.values()) / ok if ok > 0 else None

    def machine_share(self, group: str) -> float | None:
        """The share of the whole machine (all cores) ``group`` used during the run, 0 to 1."""
        if group not in self.cpu_s or self.cpu_window_s <= 0:
            return None
        return self.cpu_s[group] / (self.cpu_window_s * self.cores)


def median_rounds(measurements: list[Measurement]) -> list[Measurement]:
    """Per config and connection count, the round with the median successful req/s.

    Several rounds interleave the configurations, so a burst of load from elsewhere on a
    shared machine hits them all instead of one; the median round is what gets reported.
    A configuration that failed in any round is reported as failed.
    """
    groups: dict[tuple[str, int], list[Measurement]] = {}
    for item in measurements:
        groups.setdefault((item.config, item.connections), []).append(item)
    chosen = []
    for items in groups.values():
        failed = [item for item in items if item.result is None]
        if failed:
            chosen.append(failed[0])
            continue
        ranked = sorted(items, key=lambda item: item.result.ok_requests_per_s if item.result else 0)
        chosen.append(ranked[(len(ranked) - 1) // 2])
    return chosen


def add_ratios(measurements: list[Measurement], references: tuple[str, ...]) -> None:
    """Set each measurement's ratios to each reference at the same connection count.

    Ratios compare successful answers (status < 400): per second, and the server CPU per
    answer, so a configuration that answers 502 quickly (an overflowing backlog) looks neither
    faster nor cheaper than one that works.
    """
    rate = {
        (item.config, item.connections): item.result.ok_requests_per_s
        for item in measurements
        if item.result is not None
    }
    cpu = {
        (item.config, item.connections): item.cpu_per_ok_answer
        for item in measurements
        if item.cpu_per_ok_answer
    }
    for item in measurements:
        for ref in references:
            base = rate.get((ref, item.connections))
            ours = item.result.ok_requests_per_s if item.result else None
            item.ratios[ref] = round(ours / base, 2) if ours is not None and base else None
            base_cpu = cpu.get((ref, item.connections))
            our_cpu = item.cpu_per_ok_answer
            item.cpu_ratios[ref] = (
                round(our_cpu / base_cpu, 2) if our_cpu is not None and base_cpu else None
            )


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown_table(
    measurements: list[Measurement], references: tuple[str, ...], cpu_reference: str = "b3"
) -> str:
    """A Markdown table of the run, ready to paste into docs/benchmarks.md."""
    batch = max((item.batch for item in measurements), default=0)
    head = ["config", "conns", "req/s", "ok req/s", "p50 ms", "p99 ms", "non-2xx"]
    if batch:
        head += [f"lookups/s ({batch} per request)"]
    head += ["socket err c/r/w/t"]
    head += [f"ok vs {ref.upper()}" for ref in references]
    head += ["server CPU µs/req", f"CPU per ok answer vs {cpu_reference.upper()}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in measurements:
        if item.result is None:
            outcome = f"{item.error}" if item.skipped else f"failed: {item.error}"
            row = [item.label, str(item.connections), outcome] + [""] * 5
            row += [""] if batch else []
            row += ["—"] * (len(references) + 2)
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
                *([f"{res.ok_requests_per_s * item.batch:,.0f}"] if batch else []),
                errors,
            ]
            row += [_ratio(item.ratios.get(ref)) for ref in references]
            row += [cpu_summary(item.cpu_us), _ratio(item.cpu_ratios.get(cpu_reference))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def cpu_table(measurements: list[Measurement]) -> str:
    """Per process group: CPU seconds during the measured run, µs per request, machine share."""
    head = ["config", "conns", "requests", "process group", "CPU s", "µs/req", "% of machine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in measurements:
        if item.result is None or not item.cpu_s:
            continue
        per_request = item.cpu_us
        per_request["all"] = sum(per_request.values())
        for group, seconds in [*item.cpu_s.items(), ("all", sum(item.cpu_s.values()))]:
            share = seconds / (item.cpu_window_s * item.cores) if item.cpu_window_s else None
            us = per_request.get(group)
            lines.append(
                f"| {item.label} | {item.connections} | {item.result.requests:,} | {group} | "
                f"{seconds:.2f} | {'—' if us is None else f'{us:.0f}'} | {_share(share)} |"
            )
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2%}" if value < 0.01 else f"{value:.1%}"


def cpu_summary(cpu_us: dict[str, float]) -> str:
    """``total (name part, ...)`` of server CPU µs per request, or ``—`` when unknown."""
    if not cpu_us:
        return "—"
    parts = ", ".join(f"{name} {value:.0f}" for name, value in cpu_us.items())
    return f"{sum(cpu_us.values()):.0f} ({parts})"


def json_document(
    reported: list[Measurement], every_round: list[Measurement], metadata: dict[str, Any]
) -> dict[str, Any]:
    """The reported (median) results and every round, with the run's metadata."""
    return {
        **metadata,
        "results": [_as_json(item) for item in reported],
        "rounds": [_as_json(item) for item in every_round],
    }


def _as_json(item: Measurement) -> dict[str, Any]:
    return {
        "config": item.config,
        "label": item.label,
        "connections": item.connections,
        "round": item.round,
        "load_before": item.load_before,
        "batch": item.batch,
        "lookups_per_s": round(item.result.ok_requests_per_s * item.batch, 1)
        if item.result and item.batch
        else None,
        "error": item.error,
        "skipped": item.skipped,
        "wrk": item.result.as_dict() if item.result else None,
        "ratios": item.ratios,
        "cpu_ratios": item.cpu_ratios,
        "cpu_seconds": {name: round(value, 3) for name, value in item.cpu_s.items()},
        "cpu_window_s": round(item.cpu_window_s, 3),
        "cores": item.cores,
        "cpu_us_per_request": item.cpu_us,
        "machine_share": {name: round(item.machine_share(name) or 0, 4) for name in item.cpu_s},
    }
