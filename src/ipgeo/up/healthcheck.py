"""Container health checks: ``GET /healthz`` over HTTP or the uwsgi protocol (no Flask)."""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
from pathlib import Path
from urllib.parse import urlsplit


def _uwsgi_vars(params: dict[str, str]) -> bytes:
    body = b""
    for key, value in params.items():
        k, v = key.encode(), value.encode()
        body += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    # Packet header: modifier1 0 (a WSGI request), body size, modifier2 0.
    return struct.pack("<BHB", 0, len(body), 0) + body


def uwsgi_status(address: str, path: str = "/healthz", timeout: float = 3) -> int:
    """The HTTP status of ``GET path`` sent in the uwsgi protocol to ``host:port`` or a socket."""
    params = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "HTTP_USER_AGENT": "ipgeo-healthcheck",
        "wsgi.url_scheme": "http",
    }
    if address.startswith("/") or address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = address.removeprefix("unix:")
    else:
        host, _, port = address.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        target = (host.strip("[]") or "127.0.0.1", int(port))
    with sock:
        sock.settimeout(timeout)
        sock.connect(target)
        sock.sendall(_uwsgi_vars(params))
        head = sock.recv(64)
    # uWSGI answers with a plain HTTP status line.
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {head[:32]!r}")
    return int(parts[1])


def http_status(url: str, timeout: float = 3) -> int:
    """The HTTP status of ``GET url`` (``https://`` without verifying: a local check)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            host, parts.port or 443, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout)
    try:
        headers = {"User-Agent": "ipgeo-healthcheck", "Host": "localhost"}
        conn.request("GET", parts.path or "/", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def worker_registered_here(redis_url: str, hostname: str | None = None) -> bool:
    """Whether an RQ worker running on this host (a container: its hostname) is registered."""
    import redis
    from rq import Worker

    host = hostname or socket.gethostname()
    connection = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys: set[bytes] = connection.smembers(Worker.redis_workers_keys)  # type: ignore[assignment]
        hostnames: list[bytes | None] = [connection.hget(key.decode(), "hostname") for key in keys]  # type: ignore[misc]
        return host.encode() in hostnames
    except redis.RedisError:
        return False
    finally:
        connection.close()


def worker_data_dir_problem(redis_url: str, data_dir: Path) -> str | None:
    """Why a worker here cannot see the web app's job files (``None``: it can)."""
    import redis

    from ipgeo.jobs.shared_dir import data_dir_problem

    connection = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return data_dir_problem(connection, data_dir)
    except redis.RedisError as exc:
        return f"Redis is unavailable: {exc}"
    finally:
        connection.close()
