"""``ipgeo bulk``: enrich IP lists, CIDRs, ranges and access logs into CSV / NDJSON / JSON."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import orjson

from ipgeo.bulk import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    BulkError,
    Options,
    Summary,
    TooLarge,
    run,
)
from ipgeo.bulk import Progress as BulkProgress
from ipgeo.bulk.engine import ProgressCallback
from ipgeo.bulk.parallel import run_parallel
from ipgeo.cli.common import load_service, load_settings
from ipgeo.settings_parsers import SettingsError, parse_size

if TYPE_CHECKING:
    from rich.console import Console

# rich is imported only when it draws something (a progress bar on a terminal, a summary
# table): importing it costs a noticeable part of a short run's start-up.

# the smallest --chunk-size: each chunk is a task for a process and files of its own
MIN_CHUNK_SIZE = 4096
_FIELDS_HELP = (
    "Comma-separated columns, as in the API's ?fields= (plus source, line, input, hits, error)."
)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Write rows here instead of stdout.")
@click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="csv", show_default=True
)
@click.option("--fields", default=None, help=_FIELDS_HELP)
@click.option(
    "--per-line/--unique",
    "per_line",
    default=True,
    help="One row per input line (default, order kept) or one row per distinct IP with hits.",
)
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default="auto",
    show_default=True,
    help="Input format; auto-detected per file by default.",
)
@click.option("--ip-field", default=None, help="JSON lines: dotted path of the IP (a.b.c).")
@click.option("--ip-column", default=None, help="CSV: name of the IP column.")
@click.option("--expand", is_flag=True, help="Expand CIDRs and ranges to single addresses.")
@click.option(
    "--max-expand",
    type=click.IntRange(min=1),
    default=65_536,
    show_default=True,
    help="Most addresses one CIDR/range may expand to.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Stop with an error (and no output file) past this many rows. Default: no bound.",
)
@click.option("--summary", "show_summary", is_flag=True, help="Print a summary of the run.")
@click.option(
    "--summary-format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--lang", default=None, help="Language for place names (e.g. de).")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes: with more than one, the input is cut into chunks run side by side "
    "(the output is the same).",
)
@click.option(
    "--chunk-size",
    default=None,
    help="Cut the input into chunks of about this size (e.g. 64M; K/M/G; at least 4K). "
    "Default with --jobs: one chunk per process for files, 64M for stdin and gzip.",
)
def bulk(
    files: tuple[str, ...],
    output: str | None,
    fmt: str,
    fields: str | None,
    per_line: bool,
    input_format: str,
    ip_field: str | None,
    ip_column: str | None,
    expand: bool,
    max_expand: int,
    max_rows: int | None,
    show_summary: bool,
    summary_format: str,
    top: int,
    lang: str | None,
    jobs: int,
    chunk_size: str | None,
) -> None:
    """Enrich IPs, CIDRs, ranges or access logs from FILES ('-' is stdin; .gz is read too).

    Rows go to stdout or -o FILE; problems and the summary go to stderr (the summary goes to
    stdout when the rows go to a file).
    """
    selected = tuple(name.strip() for name in fields.split(",") if name.strip()) if fields else None
    options = Options(
        output_format=fmt,
        fields=selected,
        unique=not per_line,
        input_format=input_format,
        ip_field=ip_field,
        ip_column=ip_column,
        expand=expand,
        max_expand=max_expand,
        max_rows=max_rows,
        top=top,
        lang=lang,
    )
    size = _chunk_size(chunk_size)
    # a terminated run ends like an interrupted one: partial output and chunk files removed
    signal.signal(signal.SIGTERM, _terminated)
    service = load_service(load_settings())
    target = output or sys.stdout.buffer
    try:
        with _progress() as callback:
            if jobs > 1 or size is not None:
                summary = run_parallel(
                    service, list(files), options, target, jobs, size, progress=callback
                )
            else:
                summary = run(service, list(files), options, target, progress=callback)
    except TooLarge as exc:
        raise click.ClickException(f"{exc} (--max-rows {exc.limit})") from None
    except BulkError as exc:
        raise click.ClickException(str(exc)) from None
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): stop quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except _Terminated:
        click.echo("terminated", err=True)
        sys.exit(143)
    _report_problems(summary)
    if show_summary:
        if summary_format == "json":
            stream = sys.stdout if output else sys.stderr
            stream.write(orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2).decode())
            stream.write("\n")
        else:
            from rich.console import Console

            print_summary(Console(stderr=not output, highlight=False), summary)


class _Terminated(BaseException):
    """SIGTERM, raised where the run is, so that it cleans up on the way out."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _chunk_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return parse_size(MIN_CHUNK_SIZE, 1 << 40)(raw, "--chunk-size")
    except SettingsError as exc:
        raise click.BadParameter(exc.problem, param_hint="--chunk-size") from None


@contextmanager
def _progress() -> Iterator[ProgressCallback | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, highlight=False)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[lines]:,} lines, {task.fields[speed]:,.0f} lines/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("reading", total=None, lines=0, speed=0.0)

    def update(state: BulkProgress) -> None:
        elapsed = bar.tasks[0].elapsed or 0.0
        bar.update(
            task,
            description=state.source,
            completed=state.bytes_done,
            total=state.bytes_total,
            lines=state.lines,
            speed=state.lines / elapsed if elapsed > 0 else 0.0,
        )

    with bar:
        yield update


def _report_problems(summary: Summary) -> None:
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    if summary.unparseable:
        shown = len(summary.unparseable_lines)
        more = f" (first {shown} shown)" if shown < summary.unparseable else ""
        click.echo(f"{summary.unparseable:,} unparseable line(s){more}:", err=True)
        for bad in summary.unparseable_lines:
            text = bad.text if len(bad.text) <= 80 else bad.text[:80] + "…"
            click.echo(f"  {bad.source}:{bad.line}: {bad.reason}: {text!r}", err=True)


def print_summary(console: Console, summary: Summary) -> None:
    """Print the summary as readable tables."""
    from rich.table import Table

    counts = Table(title="Summary", show_header=False, title_justify="left")
    counts.add_column("what", style="bold")
    counts.add_column("count", justify="right")
    rows: list[tuple[str, Any]] = [
        ("lines read", summary.lines),
        ("blank / comment / header", summary.skipped),
        ("unparseable", summary.unparseable),
        ("valid IPs", summary.valid),
        ("distinct IPs", summary.distinct_ips),
        ("located", summary.located),
        ("private / reserved", summary.reserved),
        ("not found", summary.not_found),
        ("rows written", summary.rows),
        ("seconds", summary.seconds),
    ]
    for label, value in rows:
        counts.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(counts)
    titles = {
        "countries": "Top countries",
        "regions": "Top regions",
        "cities": "Top cities",
        "asns": "Top ASNs",
        "time_zones": "Top time zones",
    }
    for key, title in titles.items():
        items = summary.top.get(key) or []
        if not items:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("key")
        table.add_column("name")
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        for item in items:
            table.add_row(
                str(item["key"]),
                str(item["name"] or ""),
                f"{item['count']:,}",
                f"{item['share']:.1%}",
            )
        console.print(table)
