"""ipgeo "as deployed": the repository's ``deploy/`` configs with bench-only overrides.

The configs are read from ``deploy/`` at run time; the bench only chooses where things
listen and where files go (port, unix socket, pid/log/temp dirs). nginx's config is rendered
by the deployment's own renderer (``ipgeo.up.nginx.NginxSite``, the one ``ipgeo up`` uses)
when it exists, else from deploy/nginx's templates here.

Two fallbacks, both droppable once the deployment work is merged: ``render_templates``
(deploy/ present, ``ipgeo.up`` not), and, when ``deploy/`` is absent altogether,
``deploy_dir()`` returning ``None`` so the configs use a bench-local nginx + uWSGI set-up,
labelled as such in every report.
"""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path
from typing import Any

import jinja2

import ipgeo
from bench.http.nginx import SYSTEM_MIME_TYPES, SYSTEM_UWSGI_PARAMS, private_paths, worker_user

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEPLOY_DIR = ROOT / "deploy"
NGINX_TEMPLATES = ("nginx.conf.j2", "ipgeo-site.conf.j2")


def deploy_dir(path: Path = DEFAULT_DEPLOY_DIR) -> Path | None:
    """``path`` if it holds the deployment configs the bench uses, else ``None``."""
    needed = [path / "uwsgi.ini", path / "gunicorn.conf.py"]
    needed += [path / "nginx" / name for name in NGINX_TEMPLATES]
    return path if all(item.is_file() for item in needed) else None


def harakiri_seconds(uwsgi_ini: Path, default: int = 30) -> int:
    """The ``harakiri`` of the deployment's uwsgi.ini (nginx's timeouts nest above it)."""
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read(uwsgi_ini)
        value = parser.get("uwsgi", "harakiri", fallback=str(default))
    except configparser.Error:
        return default
    match = re.match(r"\d+", value)
    return int(match[0]) if match else default


def _first_file(*candidates: Path) -> Path:
    return next((path for path in candidates if path.is_file()), candidates[-1])


def _deployment_renderer(deploy: Path) -> Any:
    """``NginxSite`` from the deployment code, if present and reading this ``deploy`` dir."""
    try:
        module = importlib.import_module("ipgeo.up.nginx")
    except ImportError:
        return None
    own = getattr(module, "DEPLOY_DIR", None)
    if own is None or Path(own).resolve() != deploy.resolve():
        return None
    return getattr(module, "NginxSite", None)


def render_nginx(deploy: Path, run_dir: Path, port: int, socket: Path) -> Path:
    """nginx's config for ipgeo as deployed, listening on ``port``, in ``run_dir``."""
    site = _deployment_renderer(deploy)
    if site is None:
        return render_templates(deploy, run_dir, port, socket)
    conf: Path = site(
        run_dir=run_dir,
        listens=(f"127.0.0.1:{port}",),
        upstream_servers=(f"unix:{socket}",),
        access_log=str(run_dir / "access.log"),
    ).render()
    return conf


def render_templates(deploy: Path, run_dir: Path, port: int, socket: Path) -> Path:
    """Render deploy/nginx's templates into ``run_dir``; return the main config's path.

    The values mirror ``ipgeo up``'s defaults (``ipgeo.up.nginx.NginxSite`` on the
    deployment branch) with the bench's port, socket and run dir.

    Every template variable must be set here: an unknown one stops the run with its name
    (StrictUndefined) rather than silently rendering a different config.
    """
    templates = deploy / "nginx"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # nginx configs, not HTML
    )
    private_paths(run_dir)  # creates run_dir/tmp, which the template points the temp paths at
    values = {
        "version": ipgeo.__version__,
        # bench overrides: where it listens, the socket, the private run dir
        "listens": [f"127.0.0.1:{port}"],
        "upstream_servers": [f"unix:{socket}"],
        "resolver": None,  # a fixed upstream, no DNS re-resolution
        "run_dir": str(run_dir),
        "access_log": str(run_dir / "access.log"),
        "user": worker_user(),
        # the deployment's own files and values
        "protocol": "uwsgi",
        "default_server": False,  # no server names configured: this server takes every host
        "server_names": ["_"],
        "trusted_proxies": [],
        "allowlist_include": str(templates / "allowlist.conf"),
        "client_max_body_size": 1024 * 1024,
        "static_root": str(Path(ipgeo.__file__).parent / "web" / "static"),
        "uwsgi_params": str(_first_file(templates / "uwsgi_params", SYSTEM_UWSGI_PARAMS)),
        "mime_types": str(_first_file(templates / "mime.types", SYSTEM_MIME_TYPES)),
        "harakiri": harakiri_seconds(deploy / "uwsgi.ini"),
        "worker_processes": "auto",
        "error_log_level": "warn",
    }
    try:
        main = env.get_template("nginx.conf.j2").render(values)
        site = env.get_template("ipgeo-site.conf.j2").render(values)
    except jinja2.UndefinedError as exc:
        raise RuntimeError(
            f"{templates} needs a value bench/http/deploy.py does not set: {exc.message}"
        ) from None
    (run_dir / "ipgeo-site.conf").write_text(site)
    conf = run_dir / "nginx.conf"
    conf.write_text(main)
    return conf
