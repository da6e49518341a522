"""gunicorn settings for ipgeo behind nginx: ``gunicorn -c deploy/gunicorn.conf.py``."""

import multiprocessing
import os

wsgi_app = "ipgeo.wsgi:app"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
# One worker per core by default, like uWSGI's ini; WEB_CONCURRENCY is the common override.
workers = int(os.environ.get("WEB_CONCURRENCY", "0") or 0) or multiprocessing.cpu_count()
# Threads let a worker keep answering while a DNS lookup waits on the network.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Open the databases once in the master; forked workers share the mmap'ed pages.
preload_app = True
# Same budget as uWSGI's harakiri; nginx's read timeout sits a little above it.
timeout = 30
# Below the 10 s SIGTERM→SIGKILL grace period of docker/podman stop.
graceful_timeout = 8
# nginx keeps upstream connections open for a while; gunicorn must not close them first.
keepalive = 75
# Recycle workers now and then against slow leaks, not all at once.
max_requests = 5000
max_requests_jitter = 500
# The kernel queue for bursts while all workers are busy.
backlog = 1024
# Worker heartbeat files in memory: a slow overlay filesystem would make the master kill them.
_shm = "/dev/shm"  # noqa: S108 - gunicorn makes its own mkstemp files there
worker_tmp_dir = _shm if os.path.isdir(_shm) else None
# nginx logs requests; gunicorn logs errors to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "ipgeo"
# X-Forwarded-Proto is believed only from nginx on the same host / network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The runtime control socket (gunicornc) would go to $HOME, which is read-only in the image
# and shared between instances elsewhere; supervisors use signals instead.
control_socket_disable = True
