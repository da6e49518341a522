"""Rendering nginx's configuration from the templates in ``deploy/nginx/``."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ipgeo import __version__

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
STATIC_ROOT = Path(__file__).resolve().parent.parent / "web" / "static"
# Must match `harakiri` in deploy/uwsgi.ini and `timeout` in deploy/gunicorn.conf.py: nginx's
# upstream timeouts are derived from it so they stay above the app server's own limit.
REQUEST_TIMEOUT = 30
# nginx's own default; callers pass IPGEO_MAX_UPLOAD.
DEFAULT_MAX_BODY = 1024 * 1024
# Mozilla's "intermediate" TLS 1.2 ciphers (TLS 1.3 suites are OpenSSL's defaults), less the
# DHE ones, which would need a dhparam file; every client of the intermediate profile has ECDHE.
TLS_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
HSTS_MAX_AGE = 63072000  # two years, as Mozilla's generator writes it


@dataclass(frozen=True)
class TlsFiles:
    """A certificate chain and its private key (PEM) that nginx serves HTTPS with."""

    cert: Path
    key: Path
    hsts: bool = False  # send Strict-Transport-Security

    def check(self) -> None:
        """Raise ``ValueError`` when a file is missing or unreadable (before nginx starts)."""
        for what, path in (("certificate", self.cert), ("key", self.key)):
            if not os.access(path, os.R_OK) or not path.is_file():
                raise ValueError(f"TLS {what} {path} is missing or unreadable")


@dataclass(frozen=True)
class NginxSite:
    """Everything the nginx templates need; ``render`` writes the files into ``run_dir``."""

    run_dir: Path
    listens: tuple[str, ...]
    upstream_servers: tuple[str, ...]
    protocol: str = "uwsgi"
    server_names: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    client_max_body_size: int = DEFAULT_MAX_BODY
    static_root: Path = STATIC_ROOT
    worker_processes: str = "auto"
    access_log: str = "/dev/stdout"  # a file, /dev/stdout or "off"
    error_log_level: str = "warn"
    allowlist: str | None = None
    # A DNS server: resolve the (single) upstream name at request time, for replicas whose
    # addresses change (containers); None resolves once at start-up.
    resolver: str | None = None
    # Serve HTTPS (TLS 1.2 and 1.3, HTTP/2) on every listen; None: plain HTTP.
    tls: TlsFiles | None = None

    def render(self) -> Path:
        """Write ``nginx.conf``, the site and its includes into ``run_dir``; return nginx.conf."""
        if self.protocol not in {"uwsgi", "http"}:
            raise ValueError(f"protocol must be uwsgi or http, not {self.protocol!r}")
        if self.resolver and len(self.upstream_servers) != 1:
            raise ValueError("with a resolver, give one upstream name (it may have many addresses)")
        if self.tls is not None:
            self.tls.check()
        run_dir = self.run_dir
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        nginx_dir = DEPLOY_DIR / "nginx"
        for name in ("mime.types", "uwsgi_params"):
            shutil.copyfile(nginx_dir / name, run_dir / name)
        allowlist_path = run_dir / "allowlist.conf"
        if self.allowlist is None:
            shutil.copyfile(nginx_dir / "allowlist.conf", allowlist_path)
        else:
            allowlist_path.write_text(self.allowlist)
        env = Environment(
            loader=FileSystemLoader(nginx_dir),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,  # noqa: S701 - nginx configuration, not HTML
        )
        context: dict[str, object] = {
            "version": __version__,
            "run_dir": run_dir,
            "user": _worker_user(),
            "worker_processes": self.worker_processes,
            "error_log_level": self.error_log_level,
            "access_log": self.access_log,
            "mime_types": run_dir / "mime.types",
            "uwsgi_params": run_dir / "uwsgi_params",
            "listens": self.listens,
            "upstream_servers": self.upstream_servers,
            "protocol": self.protocol,
            # Without configured names this server takes every host and no 444 server is added.
            # localhost stays reachable for health checks and curl on the machine itself.
            "server_names": _with_localhost(self.server_names) or ("_",),
            "default_server": bool(self.server_names),
            "trusted_proxies": self.trusted_proxies,
            "client_max_body_size": self.client_max_body_size,
            "static_root": self.static_root,
            "allowlist_include": allowlist_path,
            "harakiri": REQUEST_TIMEOUT,
            "resolver": _bracket(self.resolver) if self.resolver else None,
            "tls": self.tls,
            "tls_cert": self.tls.cert.absolute() if self.tls else None,
            "tls_key": self.tls.key.absolute() if self.tls else None,
            "listen_flags": " ssl http2" if self.tls else "",
            "tls_ciphers": TLS_CIPHERS,
            "hsts_max_age": HSTS_MAX_AGE,
        }
        (run_dir / "ipgeo-site.conf").write_text(
            env.get_template("ipgeo-site.conf.j2").render(context)
        )
        conf = run_dir / "nginx.conf"
        conf.write_text(env.get_template("nginx.conf.j2").render(context))
        return conf


def system_resolver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """The first name server of ``/etc/resolv.conf`` (a container network's DNS)."""
    for line in resolv_conf.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    raise ValueError(f"no nameserver in {resolv_conf}")


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _with_localhost(names: tuple[str, ...]) -> tuple[str, ...]:
    return names if not names or "localhost" in names else (*names, "localhost")


def _worker_user() -> str | None:
    """Run nginx workers as the invoking user when started as root (they read our socket)."""
    if os.geteuid() != 0:
        return None  # nginx cannot switch users anyway
    return pwd.getpwuid(os.geteuid()).pw_name


def find_nginx() -> str | None:
    """The nginx binary, also where ``/usr/sbin`` is not on ``PATH``."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_argv(nginx: str, conf: Path) -> list[str]:
    """The command line running nginx in the foreground with only our files."""
    # -e: the error log before the configuration is read (the default path needs root).
    return [nginx, "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)]
