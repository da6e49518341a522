"""One ``ipgeo db update`` run: every configured edition and URL, under the lock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ipgeo.dbupdate.config import UpdateConfig, UrlSource
from ipgeo.dbupdate.dbip import PRODUCTS, dbip_filename, update_dbip
from ipgeo.dbupdate.errors import CorruptDownload, UpdateError
from ipgeo.dbupdate.fetch import Downloader
from ipgeo.dbupdate.install import (
    check_database,
    database_kind,
    directory_lock,
    extract_mmdb,
    file_digest,
    install,
)
from ipgeo.dbupdate.steps import UpdateResult, scratch_file
from ipgeo.geo.database import DatabaseError, MaxMindDatabase

log = logging.getLogger("ipgeo.dbupdate")


def _existing_kind(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        database = MaxMindDatabase(path)
    except DatabaseError:
        return None
    database.close()
    return database_kind(database.info.database_type)


def update_edition(downloader: Downloader, config: UpdateConfig, edition: str) -> UpdateResult:
    """Update one MaxMind edition to ``DIR/<edition>.mmdb`` if the server has a newer build."""
    target = config.directory / f"{edition}.mmdb"
    meta = downloader.edition_metadata(edition)
    current = file_digest(target) if target.is_file() else None
    if current == meta.md5:
        return UpdateResult(edition, str(target), "unchanged", md5=current)
    with (
        scratch_file(config.directory, edition, ".download") as download,
        scratch_file(config.directory, edition, ".mmdb.new") as fresh,
    ):
        modified = downloader.download_edition(meta, download)
        md5 = extract_mmdb(download, fresh, config.max_download)
        if md5 != meta.md5:
            raise CorruptDownload(
                f"the MD5 of the download ({md5}) does not match the server's ({meta.md5})"
            )
        info = check_database(fresh, expected_type=edition, expected_kind=None)
        install(fresh, target, modified if config.preserve_file_times else None)
    return UpdateResult(edition, str(target), "updated", info.database_type, info.build_date, md5)


def update_url(downloader: Downloader, config: UpdateConfig, source: UrlSource) -> UpdateResult:
    """Fetch one plain URL to ``DIR/<filename>``, replacing the file when the content changed."""
    target = config.directory / source.filename
    name = source.filename.removesuffix(".mmdb")
    expected_kind = _existing_kind(target) or (
        "asn" if database_kind(source.filename) == "asn" else "location"
    )
    with (
        scratch_file(config.directory, name, ".download") as download,
        scratch_file(config.directory, name, ".mmdb.new") as fresh,
    ):
        modified = downloader.download_url(source.url, download)
        if source.checksum is not None:
            algorithm, expected = source.checksum
            actual = file_digest(download, algorithm)
            if actual != expected:
                raise CorruptDownload(
                    f"the {algorithm} of the download ({actual}) does not match {expected}"
                )
        md5 = extract_mmdb(download, fresh, config.max_download)
        if target.is_file() and file_digest(target) == md5:
            return UpdateResult(source.filename, str(target), "unchanged", md5=md5)
        info = check_database(fresh, expected_type=None, expected_kind=expected_kind)
        install(fresh, target, modified if config.preserve_file_times else None)
    return UpdateResult(
        source.filename, str(target), "updated", info.database_type, info.build_date, md5
    )


def run_update(
    config: UpdateConfig, report: Callable[[UpdateResult], None] | None = None
) -> list[UpdateResult]:
    """Update every edition and URL under the directory lock; failures never stop the rest."""
    try:
        config.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UpdateError(f"cannot create {config.directory}: {exc.strerror or exc}") from None
    results: list[UpdateResult] = []
    jobs: list[tuple[str, Path, Callable[[], UpdateResult]]] = []
    downloader = Downloader(config)
    if config.uses_maxmind:
        for edition in config.editions:
            path = config.directory / f"{edition}.mmdb"
            jobs.append(
                (edition, path, lambda e=edition: update_edition(downloader, config, e))  # type: ignore[misc]
            )
    if config.dbip_url is not None:
        for product in PRODUCTS:
            path = config.directory / dbip_filename(product)
            jobs.append(
                (dbip_filename(product), path, lambda p=product: update_dbip(downloader, config, p))  # type: ignore[misc]
            )
    for source in config.urls:
        path = config.directory / source.filename
        jobs.append(
            (source.filename, path, lambda s=source: update_url(downloader, config, s))  # type: ignore[misc]
        )
    try:
        with directory_lock(config.lock_path):
            for name, path, job in jobs:
                try:
                    try:
                        result = job()
                    except OSError as exc:  # disk full, read-only directory, ...
                        raise UpdateError(f"file error: {exc}") from None
                except UpdateError as exc:
                    result = UpdateResult(
                        name, str(path), "failed", error=str(exc), error_kind=exc.kind
                    )
                    log.error("%s: %s (the installed database, if any, is unchanged)", name, exc)
                else:
                    log.info("%s: %s", name, result.status)
                results.append(result)
                if report is not None:
                    report(result)
    finally:
        downloader.close()
    return results
