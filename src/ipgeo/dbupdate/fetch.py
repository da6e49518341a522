"""HTTP downloads: geoipupdate's protocol (metadata, then download) and plain URLs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from ipgeo import __version__
from ipgeo.dbupdate.config import UpdateConfig
from ipgeo.dbupdate.errors import (
    AuthenticationFailed,
    CorruptDownload,
    DownloadTooLarge,
    NetworkError,
    NotPublished,
    too_large_hint,
)

TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class EditionMetadata:
    """What the update server says about the newest build of an edition."""

    edition_id: str
    md5: str
    date: str  # YYYY-MM-DD


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body.get("code") or "")[:200]
    return ""


class Downloader:
    """One HTTP session for an update run; retries network errors and 5xx for ``retry_for``."""

    def __init__(self, config: UpdateConfig) -> None:
        self.config = config
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"ipgeo/{__version__} (geoipupdate-compatible)"
        if config.proxy:
            self.session.proxies = {"http": config.proxy, "https": config.proxy}
        self.auth = (str(config.account_id), config.license_key) if config.uses_maxmind else None

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    @contextmanager
    def _get(self, url: str, what: str, auth: bool) -> Iterator[requests.Response]:
        response = self._get_with_retries(url, what, auth)
        try:
            if response.status_code in {401, 403}:
                message = _server_message(response)
                raise AuthenticationFailed(
                    f"{what}: the server refused the credentials (HTTP {response.status_code}"
                    + (f": {message})" if message else ")")
                    + "; check the account ID and license key"
                )
            if response.status_code != 200:
                message = _server_message(response)
                error = NotPublished if response.status_code == 404 else NetworkError
                raise error(
                    f"{what}: unexpected HTTP {response.status_code}"
                    + (f" ({message})" if message else "")
                )
            yield response
        finally:
            response.close()

    def _get_with_retries(self, url: str, what: str, auth: bool) -> requests.Response:
        deadline = time.monotonic() + self.config.retry_for
        delay = 1.0
        while True:
            try:
                response = self.session.get(
                    url, auth=self.auth if auth else None, timeout=TIMEOUT, stream=True
                )
            except requests.RequestException as exc:
                problem = f"cannot reach {_origin(url)} for {what}: {_reason(exc)}"
            else:
                if response.status_code < 500:
                    return response
                problem = f"{what}: the server answered HTTP {response.status_code}"
                response.close()
            if time.monotonic() + delay > deadline:
                raise NetworkError(problem)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def edition_metadata(self, edition: str) -> EditionMetadata:
        """``GET /geoip/updates/metadata?edition_id=…``: the newest build's MD5 and date."""
        url = f"{self.config.host}/geoip/updates/metadata?edition_id={quote(edition)}"
        with self._get(url, f"metadata of {edition}", auth=True) as response:
            try:
                body = response.json()
                entries = [item for item in body["databases"] if item.get("edition_id") == edition]
                entry = entries[0]
                return EditionMetadata(edition, str(entry["md5"]).lower(), str(entry["date"]))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise NetworkError(
                    f"metadata of {edition}: the server's answer does not describe the edition"
                ) from None

    def download_edition(self, meta: EditionMetadata, target: Path) -> float | None:
        """``GET /geoip/databases/{edition}/download?date=…&suffix=tar.gz`` into ``target``."""
        date = meta.date.replace("-", "")
        url = (
            f"{self.config.host}/geoip/databases/{quote(meta.edition_id, safe='')}"
            f"/download?date={quote(date)}&suffix=tar.gz"
        )
        return self._save(url, f"download of {meta.edition_id}", target, auth=True)

    def download_url(self, url: str, target: Path) -> float | None:
        """Download a plain URL into ``target``; return its Last-Modified time."""
        # Name the file, not the URL: query strings can hold tokens (IPinfo).
        name = urlsplit(url).path.rsplit("/", 1)[-1] or _origin(url)
        return self._save(url, f"download of {name}", target, auth=False)

    def _save(self, url: str, what: str, target: Path, auth: bool) -> float | None:
        limit = self.config.max_download
        with self._get(url, what, auth) as response:
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > limit:
                raise DownloadTooLarge(
                    f"{what}: the server announces {int(announced):,} bytes, "
                    f"more than {too_large_hint(limit)}"
                )
            modified = _http_date(response.headers.get("Last-Modified"))
            received = 0
            with target.open("wb") as out:
                try:
                    # Counted as received: no length, a chunked body or a wrong length included.
                    for chunk in response.iter_content(CHUNK):
                        received += len(chunk)
                        if received > limit:
                            raise DownloadTooLarge(
                                f"{what}: the download exceeds {too_large_hint(limit)}"
                            )
                        out.write(chunk)
                except requests.RequestException as exc:
                    # urllib3 enforces Content-Length: a cut-off body ends up here.
                    raise CorruptDownload(
                        f"{what}: the download broke off: {_reason(exc)}"
                    ) from None
        return modified


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _reason(exc: Exception) -> str:
    text = str(exc)
    # requests nests urllib3's errors; the innermost reason is the readable part.
    for marker in ("Caused by ", "NewConnectionError(", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200] or type(exc).__name__
