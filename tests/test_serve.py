"""`ipgeo serve` as a real process: the issue's acceptance commands, start-up errors, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ipgeo", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = _start({"IPGEO_DATA_DIR": str(tmp_path_factory.mktemp("serve"))}, port)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_acceptance_commands(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    body = requests.get(url + "/api/v1/lookup/8.8.8.8", timeout=5).json()
    assert body["country_iso"] == "US"
    curl = {"User-Agent": "curl/8.5.0"}
    assert requests.get(url, headers=curl, timeout=5).text == "127.0.0.1\n"
    spoofed = requests.get(url + "/ip", headers={**curl, "X-Forwarded-For": "1.2.3.4"}, timeout=5)
    assert spoofed.text == "127.0.0.1\n"


def test_ctrl_c_stops_cleanly(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = server
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "listening on http://127.0.0.1:" in output
    assert "Traceback" not in output
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IPGEO_CITY_DB": "/nonexistent/city.mmdb"}, "does not exist"),
        ({"IPGEO_CITY_DB": "GeoIP2-City-Test-Broken-Double-Format.mmdb"}, "not a valid MaxMind"),
        ({"IPGEO_CITY_DB": "MaxMind-DB-test-broken-search-tree-24.mmdb"}, "not a valid MaxMind"),
        ({"IPGEO_BATCH_LIMIT": "-3"}, "IPGEO_BATCH_LIMIT"),
        ({"IPGEO_TRUSTED_PROXIES": "10.0.0.0/33"}, "IPGEO_TRUSTED_PROXIES"),
    ],
)
def test_startup_errors_are_clear(testdata: Path, env: dict[str, str], message: str) -> None:
    env = {
        key: str(testdata / value) if value.endswith(".mmdb") and "/" not in value else value
        for key, value in env.items()
    }
    proc = _start(env, free_port())
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert message in output
    assert "Traceback" not in output
