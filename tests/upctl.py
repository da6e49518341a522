"""Running ``ipgeo up`` as a real process in tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from ipgeo.up.nginx import find_nginx

ROOT = Path(__file__).resolve().parent.parent
IPGEO = Path(sys.executable).parent / "ipgeo"


def nginx_accepts(conf: Path) -> str:
    """Check ``conf`` (rendered by ``NginxSite``) with ``nginx -t``; return its site file."""
    nginx = find_nginx()
    assert nginx
    result = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (conf.parent / "ipgeo-site.conf").read_text()


class UpProcess:
    """``ipgeo up`` on a free port with a private data directory; its output goes to a file."""

    def __init__(self, data_dir: Path, port: int, *args: str, **env: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir / "up.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("IPGEO_")}
        environ |= {"IPGEO_DATA_DIR": str(data_dir), "WEB_CONCURRENCY": "2"} | env
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(IPGEO), "up", "--port", str(port), *args],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the whole chain answers ``/healthz``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ipgeo up exited {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ipgeo up not ready after {timeout} s:\n{self.output()}")

    def descendants(self) -> list[psutil.Process]:
        """Every process started under ``ipgeo up``."""
        return psutil.Process(self.proc.pid).children(recursive=True)

    def children(self) -> dict[str, int]:
        """``{name: pid}`` of the supervised programs, from ``ipgeo up``'s state file."""
        state = json.loads((self.data_dir / "run" / "processes.json").read_text())
        assert state["pid"] == self.proc.pid
        children: dict[str, int] = state["children"]
        assert set(children.values()) == {p.pid for p in psutil.Process(self.proc.pid).children()}
        return children

    def child(self, name: str) -> psutil.Process:
        """The supervised program ``name`` (nginx, uwsgi, gunicorn, redis)."""
        return psutil.Process(self.children()[name])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal ``ipgeo up`` and wait for it; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill_all(self) -> None:
        """Clean-up after a failed test: nothing may outlive it."""
        if self.proc.poll() is None:
            for proc in self.descendants():
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            self.proc.kill()
            self.proc.wait()

    def access_log(self) -> Path:
        """The access log ``ipgeo up`` writes by default (it prints the path at start)."""
        return self.data_dir / "log" / "access.log"

    def output(self) -> str:
        """What ``ipgeo up`` and its children printed."""
        return self.log_path.read_text(errors="replace")
