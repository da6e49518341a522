"""What every update step shares: scratch files beside the target, and the result record."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The outcome for one edition or URL: ``updated``, ``unchanged`` or ``failed``."""

    name: str
    path: str
    status: str
    database_type: str | None = None
    build_date: str | None = None
    md5: str | None = None
    error: str | None = None
    error_kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@contextlib.contextmanager
def scratch_file(directory: Path, name: str, suffix: str) -> Iterator[Path]:
    """A temporary file in ``directory``, removed afterwards."""
    # Temporary files live in the target directory so the final rename is atomic.
    fd, raw = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    os.close(fd)
    path = Path(raw)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
