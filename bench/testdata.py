"""Where MaxMind's test databases are, for the tests and the benchmarks alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def find_testdata() -> Path:
    """MaxMind's test databases: ``$IPGEO_TESTDATA``, else ``../shared/testdata/maxmind`` next to
    this checkout or, for a clone made elsewhere (``git clone . /tmp/x``), next to its origin."""
    if "IPGEO_TESTDATA" in os.environ:
        return Path(os.environ["IPGEO_TESTDATA"])
    tail = Path("shared", "testdata", "maxmind")
    candidates = [ROOT.parent / tail]
    try:
        origin = subprocess.run(
            ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        origin = ""
    if origin.startswith("/"):  # a clone of a local checkout
        candidates.append(Path(origin).resolve().parent / tail)
    return next((path for path in candidates if path.is_dir()), candidates[0])
