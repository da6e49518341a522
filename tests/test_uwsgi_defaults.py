"""deploy/uwsgi.ini leaves request logging to nginx; IPGEO_ACCESS_LOG in the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port


def _access_lines(tmp_path: Path, env_extra: dict[str, str]) -> int:
    port = free_port()
    log = tmp_path / f"uwsgi-{len(env_extra)}.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    env |= {"IPGEO_DATA_DIR": str(tmp_path / "data"), "WEB_CONCURRENCY": "1"} | env_extra
    command = [
        str(Path(sys.executable).parent / "uwsgi"),
        "--ini", str(ROOT / "deploy" / "uwsgi.ini"),
        "--http11-socket", f"127.0.0.1:{port}",
        "--pidfile", str(tmp_path / f"uwsgi-{len(env_extra)}.pid"),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/lookup/8.8.8.8", timeout=5)
                assert answer.status_code == 200
                break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"uWSGI did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return log.read_text().count("ipgeo.access")


def test_deployed_uwsgi_leaves_access_logging_to_nginx(tmp_path: Path) -> None:
    assert _access_lines(tmp_path, {}) == 0
    assert _access_lines(tmp_path, {"IPGEO_ACCESS_LOG": "true"}) >= 1
