"""DB-IP's free monthly Lite databases (IP-to-City and IP-to-ASN), no account needed."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from ipgeo.dbupdate.config import UpdateConfig
from ipgeo.dbupdate.errors import CorruptDownload, NotPublished, WrongDatabaseType
from ipgeo.dbupdate.fetch import Downloader
from ipgeo.dbupdate.install import check_database, extract_mmdb, file_digest, install, is_gzip
from ipgeo.dbupdate.steps import UpdateResult, scratch_file
from ipgeo.geo.sources import ASN, LOCATION

# product → (the kind of data, what its database type must name)
PRODUCTS = {"city": (LOCATION, re.compile(r"city", re.IGNORECASE)), "asn": (ASN, None)}


def months(today: date) -> tuple[str, str]:
    """This month and the one before, as ``YYYY-MM``."""
    previous = (
        date(today.year - 1, 12, 1)
        if today.month == 1
        else today.replace(month=today.month - 1, day=1)
    )
    return today.strftime("%Y-%m"), previous.strftime("%Y-%m")


def dbip_filename(product: str) -> str:
    """The installed file of a product: ``dbip-city-lite.mmdb``, ``dbip-asn-lite.mmdb``."""
    return f"dbip-{product}-lite.mmdb"


def update_dbip(
    downloader: Downloader,
    config: UpdateConfig,
    product: str,
    today: Callable[[], date] = lambda: datetime.now(UTC).date(),
) -> UpdateResult:
    """Fetch this month's file of ``product`` (last month's if not out yet) and install it."""
    assert config.dbip_url is not None
    kind, type_pattern = PRODUCTS[product]
    filename = dbip_filename(product)
    target = config.directory / filename
    name = filename.removesuffix(".mmdb")
    with (
        scratch_file(config.directory, name, ".download") as download,
        scratch_file(config.directory, name, ".mmdb.new") as fresh,
    ):
        current, previous = months(today())
        try:
            modified = downloader.download_url(_url(config, product, current), download)
        except NotPublished:
            modified = downloader.download_url(_url(config, product, previous), download)
        if not is_gzip(download):
            raise CorruptDownload("the download is not a gzip file (an error page?)")
        md5 = extract_mmdb(download, fresh, config.max_download)
        if target.is_file() and file_digest(target) == md5:
            return UpdateResult(filename, str(target), "unchanged", md5=md5)
        info = check_database(fresh, expected_type=None, expected_kind=kind)
        if type_pattern is not None and not type_pattern.search(info.database_type):
            raise WrongDatabaseType(
                f"the download is a {info.database_type} database, not a City database"
            )
        install(fresh, target, modified if config.preserve_file_times else None)
    return UpdateResult(filename, str(target), "updated", info.database_type, info.build_date, md5)


def _url(config: UpdateConfig, product: str, month: str) -> str:
    return f"{config.dbip_url}dbip-{product}-lite-{month}.mmdb.gz"
