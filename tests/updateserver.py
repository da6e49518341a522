"""A real HTTP server speaking geoipupdate's protocol (metadata, then download) for tests."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


def tar_gz(name: str, data: bytes, date: str = "20240102") -> bytes:
    """Pack ``data`` as ``<name>_<date>/<name>.mmdb`` in a tar.gz, like MaxMind does."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member, content in (
            (f"{name}_{date}/COPYRIGHT.txt", b"test data\n"),
            (f"{name}_{date}/{name}.mmdb", data),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class Edition:
    """What the server offers for one edition ID."""

    mmdb: bytes
    date: str = "2024-01-02"
    md5: str | None = None  # override the advertised MD5 (to simulate a mismatch)
    payload: bytes | None = None  # override the download body (e.g. truncated bytes)

    @property
    def advertised_md5(self) -> str:
        return self.md5 or hashlib.md5(self.mmdb).hexdigest()

    def body(self, edition_id: str) -> bytes:
        if self.payload is not None:
            return self.payload
        return tar_gz(edition_id, self.mmdb, self.date.replace("-", ""))


@dataclass
class UpdateServerState:
    """Accounts, editions and plain files the server serves, plus a log of requests."""

    accounts: dict[str, str] = field(default_factory=dict)
    editions: dict[str, Edition] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # How a file's body is framed: "length" (a true Content-Length), "chunked", "until-close"
    # (no length; the connection's end ends it) or "claims:N" (a false Content-Length of N).
    framing: dict[str, str] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)  # default: octet-stream
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_OCTETS = "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    state: UpdateServerState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", formatdate(1_704_153_600, usegmt=True))
        self.end_headers()
        self.wfile.write(body)

    def _send_framed(self, body: bytes, framing: str) -> None:
        """Send ``body`` without a (true) Content-Length; the client may hang up early."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing.startswith("claims:"):
            self.send_header("Content-Length", framing.removeprefix("claims:"))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for start in range(0, len(body), 4096):
                piece = body[start : start + 4096]
                if framing == "chunked":
                    piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                self.wfile.write(piece)
            if framing == "chunked":
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, orjson.dumps({"code": code, "error": message}))

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return self.state.accounts.get(user) == password

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        with self.state.lock:
            self.state.requests.append(self.path)
        if parts.path in self.state.files:
            body = self.state.files[parts.path]
            framing = self.state.framing.get(parts.path, "length")
            if framing == "length":
                self._send(200, body, self.state.content_types.get(parts.path, _OCTETS))
            else:
                self._send_framed(body, framing)
            return
        if parts.path.startswith("/geoip/") and not self._authorized():
            self._error(401, "ACCOUNT_ID_REQUIRED", "Invalid account ID or license key")
            return
        if parts.path == "/geoip/updates/metadata":
            wanted = query.get("edition_id", [])
            found = [
                {"edition_id": name, "md5": edition.advertised_md5, "date": edition.date}
                for name in wanted
                if (edition := self.state.editions.get(name)) is not None
            ]
            if not found:
                self._error(404, "EDITION_ID_NOT_FOUND", "Edition not found")
                return
            self._send(200, orjson.dumps({"databases": found}))
            return
        segments = parts.path.split("/")
        if len(segments) == 5 and segments[1:3] == ["geoip", "databases"]:
            edition = self.state.editions.get(segments[3])
            if segments[4] != "download" or edition is None:
                self._error(404, "NOT_FOUND", "Not found")
                return
            if query.get("date") != [edition.date.replace("-", "")]:
                self._error(400, "INVALID_DATE", "wrong date")
                return
            self._send(200, edition.body(segments[3]), "application/gzip")
            return
        self._error(404, "NOT_FOUND", "Not found")


class UpdateServer:
    """Runs ``ThreadingHTTPServer`` on a free loopback port in a background thread."""

    def __init__(self) -> None:
        self.state = UpdateServerState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpdateServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dbip_month_path(product: str, month: str) -> str:
    """Where DB-IP publishes a month's Lite file (``/free/dbip-city-lite-2026-11.mmdb.gz``)."""
    return f"/free/dbip-{product}-lite-{month}.mmdb.gz"


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed."""
    return gzip.compress(data)


def read(path: Path) -> bytes:
    """The bytes of a file."""
    return path.read_bytes()


def write_versioned_mmdb(
    path: Path, city: str, build_epoch: int, database_type: str = "GeoLite2-City"
) -> Path:
    """A tiny City database whose build time and city name tell versions apart."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    class _Writer(MMDBWriter):  # type: ignore[misc]
        def _build_meta(self) -> dict[str, Any]:
            meta: dict[str, Any] = super()._build_meta()
            meta["build_epoch"] = build_epoch
            return meta

    writer = _Writer(
        ip_version=6,
        database_type=database_type,
        languages=["en"],
        description={"en": "ipgeo reload test database"},
        ipv4_compatible=True,
    )
    record = {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "city": {"names": {"en": city}},
        "location": {"latitude": 52.5, "longitude": 13.4, "time_zone": "Europe/Berlin"},
    }
    writer.insert_network(IPSet(["81.2.69.0/24", "2a02:c7c::/32"]), record)
    writer.to_db_file(str(path))
    return path
