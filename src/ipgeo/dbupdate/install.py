"""Checking a downloaded database and renaming it into place atomically."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from ipgeo.dbupdate.errors import CorruptDownload, LockBusy, UpdateError, WrongDatabaseType
from ipgeo.geo.database import DatabaseError, MaxMindDatabase
from ipgeo.geo.models import DatabaseInfo

CHUNK = 1 << 20
# The largest commercial databases are a few GB; anything bigger is a broken or hostile download.
MAX_DATABASE_BYTES = 8 << 30
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


def _copy(source: _Readable, out: IO[bytes]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    while chunk := source.read(CHUNK):
        written += len(chunk)
        if written > MAX_DATABASE_BYTES:
            raise CorruptDownload(f"the database unpacks to more than {MAX_DATABASE_BYTES} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def extract_mmdb(download: Path, target: Path) -> str:
    """Write the ``.mmdb`` inside ``download`` (plain, gzip or tar.gz) to ``target``; its MD5."""
    try:
        with download.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
        if not compressed:
            with download.open("rb") as plain, target.open("wb") as out:
                return _copy(plain, out)
        with gzip.open(download, "rb") as probe:
            head = probe.read(512)
        if head[257:262] != b"ustar":
            with gzip.open(download, "rb") as unzipped, target.open("wb") as out:
                return _copy(unzipped, out)
        with tarfile.open(download, "r:gz") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".mmdb"):
                    member_file = archive.extractfile(member)
                    if member_file is None:
                        break
                    with member_file, target.open("wb") as out:
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


def database_kind(database_type: str) -> str:
    """``asn`` for ASN/ISP databases, ``location`` for City/Country ones (all vendors)."""
    return "asn" if re.search(r"asn|isp", database_type, re.IGNORECASE) else "location"


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
