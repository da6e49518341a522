"""Command line of ``python -m bench.parity`` (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from itertools import zip_longest
from pathlib import Path

import bench.parity
from bench.parity.cases import Case, cases
from bench.parity.inputs import SEED
from bench.parity.runs import asn_run, city_run
from bench.parity.store import CaseWriter, describe, differing_lines, read_case

MANIFEST = "manifest.json"


@dataclass
class Outcome:
    """What recording or comparing one case found."""

    line: str
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    failed: bool = False


def record_case(directory: Path, case: Case) -> Outcome:
    """Store the current code's answers of ``case`` in ``directory``."""
    started, items, lines, size = time.monotonic(), 0, 0, 0
    part = directory / f"{case.name}.gz.part"
    with CaseWriter(part) as writer:
        for key, payload in case.items():
            writer.write(key, payload)
            items, lines, size = items + 1, lines + payload.count(b"\n") + 1, size + len(payload)
    part.replace(directory / f"{case.name}.gz")
    line = f"{case.name:36} {items:>9,} items {lines:>11,} lines  {_since(started)}"
    return Outcome(line, {"items": items, "lines": lines, "bytes": size})


def compare_case(directory: Path, case: Case, show: int) -> Outcome:
    """Compare the current code's answers of ``case`` with those stored in ``directory``."""
    started, items, differ, lines = time.monotonic(), 0, 0, 0
    path = directory / f"{case.name}.gz"
    if not path.exists():
        return Outcome(f"{case.name:36} MISSING in {directory}", failed=True)
    examples = []
    for old, new in zip_longest(read_case(path), case.items()):
        items += 1
        if old == new:
            continue
        differ += 1
        (old_key, old_data), (new_key, new_data) = old or ("-", b""), new or ("-", b"")
        if old_key == new_key:
            lines += differing_lines(old_data, new_data)
            detail = describe(old_key, old_data, new_data)
        else:
            detail = f"  item {items}: stored {old_key!r}, now {new_key!r}"
        if differ <= show:
            examples.append(f"{case.name}:\n{detail}")
    verdict = f"{differ:,} DIFFER ({lines:,} lines)" if differ else "identical"
    line = f"{case.name:36} {items:>9,} items  {verdict:26} {_since(started)}"
    return Outcome(line, {"items": items, "differ": differ}, examples, differ > 0)


def run_cases(selected: list[Case], work: Callable[[Case], Outcome]) -> list[Outcome]:
    """Run ``work`` on every case (``ipgeo bulk`` ones in a second thread), printing as done."""
    outcomes: dict[str, Outcome] = {}

    def one(case: Case) -> None:
        outcomes[case.name] = outcome = work(case)
        print(outcome.line, flush=True)

    with ThreadPoolExecutor(1) as pool:
        futures = [pool.submit(one, case) for case in selected if case.subprocess]
        for case in selected:
            if not case.subprocess:
                one(case)
        for future in futures:
            future.result()
    return [outcomes[case.name] for case in selected]


def record(directory: Path, selected: list[Case]) -> int:
    """Store the answers of ``selected`` in ``directory`` (and update its manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {"cases": {}}
    outcomes = run_cases(selected, lambda case: record_case(directory, case))
    for case, outcome in zip(selected, outcomes, strict=True):
        manifest["cases"][case.name] = outcome.counts
    manifest.update(seed=SEED, ipgeo=version("ipgeo"), recorded=time.strftime("%Y-%m-%d %H:%M:%S"))
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


def compare(directory: Path, selected: list[Case], show: int, everything: bool) -> int:
    """Compare the answers of ``selected`` with ``directory``; 1 on any difference."""
    outcomes = run_cases(selected, lambda case: compare_case(directory, case, show))
    failed = any(outcome.failed for outcome in outcomes)
    manifest = directory / MANIFEST
    if everything and manifest.exists():
        names = {case.name for case in selected}
        for name in json.loads(manifest.read_text())["cases"]:
            if name not in names:
                print(f"{name:36} stored, but no longer asked")
                failed = True
    examples = [example for outcome in outcomes for example in outcome.examples]
    if examples:
        print(f"\nFirst differences (at most {show} per case):")
        print("\n".join(examples))
    print("\nDIFFERENT" if failed else "\nIDENTICAL (after normalising utc_offset, local_time)")
    return 1 if failed else 0


def _since(started: float) -> str:
    return f"{time.monotonic() - started:6.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run ``record`` or ``compare``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.parity",
        description=bench.parity.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["record", "compare"])
    parser.add_argument("directory", type=Path, help="where the answers are stored")
    parser.add_argument("--only", default="", help="cases whose name contains one of A,B,...")
    parser.add_argument("--show", type=int, default=3, help="differences shown per case")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # a 500's traceback is recorded as its answer, not printed
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipgeo-parity-") as temp:
        found = cases(city_run(Path(temp))) + cases(asn_run(Path(temp)))
        wanted = [part for part in args.only.split(",") if part]
        selected = [case for case in found if not wanted or any(w in case.name for w in wanted)]
        if args.command == "record":
            status = record(args.directory, selected)
        else:
            status = compare(args.directory, selected, args.show, everything=not wanted)
    print(f"{args.command}: {_since(started).strip()} in all", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
