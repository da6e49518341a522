"""Checking a downloaded database and renaming it into place atomically."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from ipgeo.dbupdate.errors import (
    CorruptDownload,
    DownloadTooLarge,
    LockBusy,
    UpdateError,
    WrongDatabaseType,
    too_large_hint,
)
from ipgeo.geo.database import DatabaseError, MaxMindDatabase
from ipgeo.geo.models import DatabaseInfo
from ipgeo.geo.sources import database_kind

__all__ = [
    "check_database",
    "database_kind",
    "directory_lock",
    "extract_mmdb",
    "file_digest",
    "install",
    "is_gzip",
]

CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def directory_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (geoipupdate's lock) or raise ``LockBusy``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UpdateError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"another update is running (lock file {path})") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedReader:
    """Reads ``source`` but raises ``DownloadTooLarge`` past ``limit`` bytes (gzip bombs)."""

    def __init__(self, source: _Readable, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.read_so_far = 0

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; never more than one byte beyond the limit in all."""
        room = self.limit + 1 - self.read_so_far
        data = self.source.read(room if size < 0 else min(size, room))
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise DownloadTooLarge(
                f"the download unpacks to more than {too_large_hint(self.limit)}"
            )
        return data


def _copy(source: _Readable, out: IO[bytes]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def is_gzip(path: Path) -> bool:
    """True when ``path`` starts like a gzip file."""
    with path.open("rb") as raw:
        return raw.read(2) == _GZIP_MAGIC


def extract_mmdb(download: Path, target: Path, limit: int) -> str:
    """Write the ``.mmdb`` inside ``download`` (plain, gzip or tar.gz) to ``target``; its MD5.

    No more than ``limit`` bytes are unpacked (a tar.gz counts as a whole, headers and other
    members included); beyond that ``DownloadTooLarge`` is raised.
    """
    try:
        if not is_gzip(download):  # the download itself was bounded
            with download.open("rb") as plain, target.open("wb") as out:
                return _copy(plain, out)
        with gzip.open(download, "rb") as probe:
            is_tar = probe.read(512)[257:262] == b"ustar"
        with gzip.open(download, "rb") as unzipped, target.open("wb") as out:
            stream = _BoundedReader(unzipped, limit)
            if not is_tar:
                return _copy(stream, out)
            # Stream mode: tarfile only reads, never seeks, so every unpacked byte is counted.
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    if member.isfile() and member.name.endswith(".mmdb"):
                        member_file = archive.extractfile(member)
                        if member_file is None:
                            break
                        with member_file:
                            return _copy(member_file, out)
        raise CorruptDownload("the archive holds no .mmdb file")
    except (EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError) as exc:
        raise CorruptDownload(f"the download is truncated or not a valid archive ({exc})") from None


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file (``md5`` or ``sha256``)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_database(
    path: Path, expected_type: str | None, expected_kind: str | None
) -> DatabaseInfo:
    """Open and fully walk ``path``; raise unless it is a database of the expected type."""
    try:
        database = MaxMindDatabase(path)
    except DatabaseError as exc:
        raise CorruptDownload(f"the download is not a readable database: {exc}") from None
    try:
        database.verify()
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CorruptDownload(f"the download's search tree or data is corrupt: {exc}") from None
    finally:
        database.close()
    actual = database.info.database_type
    if expected_type is not None and actual.lower() != expected_type.lower():
        raise WrongDatabaseType(f"the download is a {actual} database, not {expected_type}")
    if expected_kind is not None and database_kind(actual) != expected_kind:
        raise WrongDatabaseType(
            f"the download is a {actual} database ({database_kind(actual)}), "
            f"but {expected_kind} data is expected here"
        )
    return database.info


def install(new_file: Path, target: Path, mtime: float | None = None) -> None:
    """Rename ``new_file`` over ``target`` atomically, keeping the old one as ``target.prev``."""
    try:
        with new_file.open("rb") as handle:
            os.fsync(handle.fileno())
        if mtime is not None:
            os.utime(new_file, (mtime, mtime))
        if target.exists():
            previous = target.with_name(target.name + ".prev")
            keep = target.with_name(f".{target.name}.prev.tmp")
            keep.unlink(missing_ok=True)
            try:
                os.link(target, keep)
            except OSError:  # no hard links on this file system: copy instead
                shutil.copy2(target, keep)
            os.replace(keep, previous)
        os.replace(new_file, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise UpdateError(f"cannot install {target}: {exc.strerror or exc}") from None
