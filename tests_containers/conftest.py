"""The compose stack under podman, started once for the container tests."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
# The default stack (without the opt-in `updates` profile).
SERVICES = ("nginx", "app", "worker", "dashboard", "timezones", "redis", "postgis")
CHUNK_SIZE = 64 * 1024
WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """One compose project: podman-compose to manage it, podman to poke at its containers."""

    def __init__(self, project: str, port: int, env_file: Path) -> None:
        self.project = project
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.dashboard_auth = ("ipgeo", secrets.token_hex(8))
        self.env = os.environ | {
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "IPGEO_PUBLISH": f"127.0.0.1:{port}",
            "IPGEO_DASHBOARD_PUBLISH": f"127.0.0.1:{self.dashboard_port}",
            "IPGEO_APP_REPLICAS": "2",
            # podman-compose 1.0 ignores --scale: two workers share the data volume.
            "IPGEO_WORKER_REPLICAS": "2",
            "IPGEO_ENV_FILE": str(env_file),
            "IPGEO_WHEELS": "host",
        }

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            timeout=300,
            args=["podman-compose", "--podman-args=--runtime=runc", "-p", self.project, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )

    def podman(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "--runtime", "runc", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def container(self, service: str, num: int = 1) -> str:
        return f"{self.project}_{service}_{num}"

    def logs(self, name: str) -> str:
        """A container's output (stdout and stderr)."""
        out = self.podman("logs", name, check=False)
        return out.stdout + out.stderr

    def network(self) -> str:
        """The compose project's network (podman-compose: ``<project>_default``)."""
        out = self.podman(
            "inspect", "-f", "{{json .NetworkSettings.Networks}}", self.container("app")
        )
        return str(next(iter(json.loads(out.stdout))))

    def containers(self) -> list[str]:
        out = self.podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
            "--format", "{{.Names}}",
        ).stdout  # fmt: skip
        return out.split()

    def healthy(self, name: str) -> bool:
        return self.podman("healthcheck", "run", name, check=False).returncode == 0

    def wait_healthy(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(name):
                return
            time.sleep(0.5)
        logs = self.podman("logs", name, check=False)
        raise AssertionError(f"{name} not healthy after {timeout} s:\n{logs.stdout}{logs.stderr}")

    def wait_http(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"nginx not answering after {timeout} s")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env_file = tmp_path_factory.mktemp("env") / ".env"
    project = f"ipgeoci{secrets.token_hex(3)}"
    stack = Stack(project, free_port(), env_file)
    # .env.example as a user would edit it: the passwords changed (each appears twice).
    password = secrets.token_hex(12)
    env_file.write_text(
        (ROOT / ".env.example")
        .read_text()
        .replace(":change-me@", f":{password}@")
        .replace("POSTGRES_PASSWORD=change-me", f"POSTGRES_PASSWORD={password}")
        .replace(
            "IPGEO_DASHBOARD_PASSWORD=change-me",
            f"IPGEO_DASHBOARD_PASSWORD={stack.dashboard_auth[1]}",
        )
        # The bundled 2019 data is stale by design: /readyz would say degraded for its age.
        + "\nIPGEO_DB_MAX_AGE_DAYS=0\n"
        # Small chunks: a job of a few hundred KB is cut into several, spread over the workers.
        + f"IPGEO_JOB_CHUNK_SIZE={CHUNK_SIZE}\n"
    )
    try:
        # Named services: podman-compose 1.0 ignores `profiles` and would start db-update too.
        up = stack.compose("up", "-d", *SERVICES, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("redis", "postgis", "app", "worker", "dashboard"):
            stack.wait_healthy(stack.container(name))
        stack.wait_healthy(stack.container("app", 2))
        stack.wait_healthy(stack.container("worker", 2))
        stack.wait_http()
        yield stack
    finally:
        stack.compose("down", "-v", "-t", "2", check=False)
        for name in stack.containers():
            stack.podman("rm", "-f", name, check=False)
        for volume in ("app-data", "redis-data", "postgis-data"):
            stack.podman("volume", "rm", "-f", f"{project}_{volume}", check=False)
