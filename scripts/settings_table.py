"""Rewrite the configuration table in README.md from ``Settings`` (run after adding a setting)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ipgeo.settings import Settings

START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def table() -> str:
    """The Markdown table of every setting."""
    rows = ["| Variable | Example | Meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{example}` | {doc} |" for name, example, doc in Settings.describe()]
    return "\n".join(rows)


def main() -> int:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    new = re.sub(
        re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table()}\n{END}", text, flags=re.S
    )
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
