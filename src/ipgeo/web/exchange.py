"""One request as the request pipeline and its handlers see it: a thin view of the WSGI environ.

It reads only what a request uses, when it uses it, and reads it the way Werkzeug does (the
path, the query arguments, ``Accept``, the body), so that answers match what Flask's request
object would give. Parsed query strings, ``Accept`` headers and client addresses repeat a lot
across requests and are kept in small bounded tables.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header
from werkzeug.wsgi import get_content_length, get_current_url, get_input_stream

from ipgeo.clientip import client_ip
from ipgeo.formats import to_json

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ipgeo.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# nginx's $request_id is 32 hex digits; accept ids of that kind, never arbitrary text.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TABLE_LIMIT = 4096  # entries per table; a full table starts again empty
_UNSET: Any = object()
_BODY_CHUNK = 64 * 1024


def request_id_from(incoming: str) -> str:
    """The id for a request: ``incoming`` (an ``X-Request-ID``) when sane, else a new one."""
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


class BoundedTable(dict[K, V]):
    """A dict of computed values that starts again empty when it is full."""

    def __init__(self, compute: Callable[[K], V], limit: int = _TABLE_LIMIT) -> None:
        super().__init__()
        self.compute = compute
        self.limit = limit

    def __missing__(self, key: K) -> V:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.compute(key)
        return value


def _query_arguments(query_string: str) -> dict[str, str]:
    """The first value of each query argument, as Werkzeug's ``request.args.get`` gives it."""
    text = query_string.encode("latin-1").decode(errors="replace")
    arguments: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        arguments.setdefault(name, value)
    return arguments


_ARGUMENTS: BoundedTable[str, dict[str, str]] = BoundedTable(_query_arguments)
_ACCEPTS: BoundedTable[str, MIMEAccept] = BoundedTable(
    lambda header: parse_accept_header(header or None, MIMEAccept)
)


def parsed_accept(header: str) -> MIMEAccept:
    """An ``Accept`` header parsed as Werkzeug's ``request.accept_mimetypes``."""
    return _ACCEPTS[header]


class ClientAddresses:
    """The client address of a request by the trusted-proxy rule, per (peer, forwarding headers)."""

    def __init__(self, trusted_proxies: tuple[IPNetwork, ...]) -> None:
        self.trusted_proxies = trusted_proxies
        self._found: BoundedTable[tuple[str, str | None, str | None], IPAddress | None] = (
            BoundedTable(lambda key: client_ip(*key, self.trusted_proxies))
        )

    def of(self, environ: WSGIEnvironment) -> IPAddress | None:
        """The client address of the request in ``environ`` (``None`` for a non-IP peer)."""
        return self._found[
            (
                environ.get("REMOTE_ADDR") or "",
                environ.get("HTTP_X_FORWARDED_FOR"),
                environ.get("HTTP_X_REAL_IP"),
            )
        ]


class Exchange:
    """One request: method, path, query, headers, client address, body, routing result."""

    __slots__ = (
        "_arguments",
        "_body",
        "_client",
        "_clients",
        "args",
        "endpoint",
        "environ",
        "method",
        "path",
        "path_info",
        "query_string",
        "request_id",
        "rule",
    )

    def __init__(self, environ: WSGIEnvironment, clients: ClientAddresses) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        path: str = environ.get("PATH_INFO", "")
        if not path.isascii():  # Werkzeug's reading: the bytes of the path as UTF-8
            path = path.encode("latin-1").decode(errors="replace")
        self.path_info = path  # what Werkzeug's URL matching reads
        self.path = "/" + path.lstrip("/")
        self.query_string: str = environ.get("QUERY_STRING", "")
        self.request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        self.rule: str | None = None  # the matched URL rule, e.g. /api/v1/lookup/<path:query>
        self.endpoint: str | None = None  # its endpoint, e.g. api.lookup
        self.args: dict[str, str] = {}  # the rule's arguments
        self._clients = clients
        self._client: IPAddress | None = _UNSET
        self._arguments: dict[str, str] | None = None
        self._body: bytes | None = None

    @property
    def blueprint(self) -> str | None:
        """The blueprint part of the endpoint (``api`` of ``api.lookup``), as Flask names it."""
        endpoint = self.endpoint
        return endpoint.rpartition(".")[0] if endpoint and "." in endpoint else None

    @property
    def client_ip(self) -> IPAddress | None:
        """The real client address (trusted proxies' forwarding headers believed)."""
        if self._client is _UNSET:
            self._client = self._clients.of(self.environ)
        return self._client

    def arg(self, name: str) -> str | None:
        """The first value of query argument ``name``."""
        if not self.query_string:
            return None
        if self._arguments is None:
            self._arguments = _ARGUMENTS[self.query_string]
        return self._arguments.get(name)

    def header(self, name: str, default: str = "") -> str:
        """A request header by its WSGI name (``HTTP_USER_AGENT``)."""
        value: str = self.environ.get(name, default)
        return value

    @property
    def accept(self) -> MIMEAccept:
        """The parsed ``Accept`` header."""
        return parsed_accept(self.environ.get("HTTP_ACCEPT", ""))

    @property
    def user_agent(self) -> str:
        """The ``User-Agent`` header."""
        return self.header("HTTP_USER_AGENT")

    @property
    def content_length(self) -> int | None:
        """The declared body length, if any."""
        return get_content_length(self.environ)

    def body(self, limit: int) -> bytes:
        """The request body, read once: at most ``limit + 1`` bytes, whatever the framing.

        A body longer than ``limit`` (declared or chunked) comes back ``limit + 1`` bytes long,
        so that callers can tell it is too large without holding more of it.
        """
        if self._body is None:
            stream = get_input_stream(self.environ)
            parts: list[bytes] = []
            wanted = limit + 1
            while wanted > 0 and (chunk := stream.read(min(wanted, _BODY_CHUNK))):
                parts.append(chunk)
                wanted -= len(chunk)
            self._body = b"".join(parts)
        return self._body

    @property
    def host_url(self) -> str:
        """``scheme://host/`` of the request, as Werkzeug's ``request.host_url``."""
        return get_current_url(self.environ, host_only=True)

    @property
    def full_path(self) -> str:
        """Path and query string, as Werkzeug's ``request.full_path`` without a bare ``?``."""
        query = self.query_string.encode("latin-1").decode(errors="replace")
        return f"{self.path}?{query}".rstrip("?")


class Answer(NamedTuple):
    """What a pipeline handler answers: status, body and content type."""

    status: int
    body: bytes
    content_type: str


def json_answer(data: Any, status: int = 200) -> Answer:
    """A JSON answer serialized with orjson."""
    return Answer(status, to_json(data), "application/json")


def text_answer(text: str, status: int = 200) -> Answer:
    """A one-line plain-text answer."""
    return Answer(status, f"{text}\n".encode(), "text/plain; charset=utf-8")
