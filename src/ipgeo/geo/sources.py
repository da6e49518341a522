"""Which database file to serve: a configured path, or the newest installed one of its kind.

``GeoService`` resolves its sources at every reload check, so a database that
``ipgeo db update`` installs into the directory is picked up without a restart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from ipgeo.geo.tree import FileSignature, signature_of

LOCATION = "location"
ASN = "asn"


def database_kind(database_type: str) -> str:
    """``asn`` for ASN/ISP databases, ``location`` for City/Country ones (all vendors)."""
    return ASN if re.search(r"asn|isp", database_type, re.IGNORECASE) else LOCATION


@dataclass(frozen=True, slots=True)
class _Installed:
    signature: FileSignature
    kind: str | None  # None: not a readable database
    build_epoch: int


@dataclass
class InstalledDatabases:
    """The ``*.mmdb`` files of a directory, their kind and build time (read once per version)."""

    directory: Path
    _seen: dict[Path, _Installed] = field(default_factory=dict)

    def newest(self, kind: str) -> Path | None:
        """The installed database of ``kind`` with the latest build (then mtime), if any."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return None
        best: tuple[int, int, str] | None = None
        found: Path | None = None
        seen: dict[Path, _Installed] = {}
        for entry in entries:
            # hidden names are the updater's scratch files; ``.mmdb.prev`` never matches
            if entry.name.startswith(".") or not entry.name.endswith(".mmdb"):
                continue
            path = Path(entry.path)
            try:
                stat = entry.stat()
            except OSError:
                continue
            installed = self._read(path, signature_of(stat))
            seen[path] = installed
            rank = (installed.build_epoch, stat.st_mtime_ns, entry.name)
            if installed.kind == kind and (best is None or rank > best):
                best, found = rank, path
        self._seen = seen
        return found

    def _read(self, path: Path, signature: FileSignature) -> _Installed:
        known = self._seen.get(path)
        if known is not None and known.signature == signature:
            return known
        try:
            reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        except (InvalidDatabaseError, OSError, ValueError):
            return _Installed(signature, None, 0)
        try:
            meta = reader.metadata()
            return _Installed(signature, database_kind(meta.database_type), meta.build_epoch)
        finally:
            reader.close()


@dataclass(frozen=True)
class DatabaseSource:
    """A configured file, else the newest installed one of ``kind``, else ``fallback()``."""

    kind: str
    path: Path | None = None
    installed: InstalledDatabases | None = None
    fallback: Callable[[], Path] | None = None

    def resolve(self) -> Path | None:
        """The file to serve now (``None``: no such database)."""
        if self.path is not None:
            return self.path
        newest = self.installed.newest(self.kind) if self.installed is not None else None
        if newest is not None:
            return newest
        return self.fallback() if self.fallback is not None else None
