"""echoip (Go, mpolden/echoip), the fastest self-hosted peer, for bench/http.

Its source and build script live outside the repository (``../shared/peers``: the source
tarball and ``build-echoip.sh``, which builds it from Debian's Go packages); the harness calls
that script once, into a cache directory outside the repository, and skips the peer with a
message when it cannot. Nothing of echoip is kept in this repository.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from bench.http.deploy import ROOT
from bench.http.processes import ConfigUnavailable, Stack, free_port
from ipgeo.geo.database import bundled_city_db

if TYPE_CHECKING:
    from bench.http.configs import Options

DEFAULT_PEERS_DIR = ROOT.parent / "shared" / "peers"
BUILD_SCRIPT = "build-echoip.sh"
# echoip's JSON lookup of any address (its equivalent of /api/v1/lookup/<ip>).
LOOKUP_PREFIX = "/json?ip="
BUILD_TIMEOUT_S = 1800  # the script may first install Go from Debian's packages


def default_cache_dir() -> Path:
    """Where peers are built: ``$XDG_CACHE_HOME/ipgeo-bench`` (``~/.cache/ipgeo-bench``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ipgeo-bench"


def _source_version(peers_dir: Path) -> str:
    """``echoip-<commit>`` from the source tarball's name, so a new tarball gets a new build."""
    tarballs = sorted(peers_dir.glob("echoip-*.tar.gz"))
    return tarballs[-1].name.removesuffix(".tar.gz") if tarballs else "echoip"


def echoip_binary(options: Options) -> Path:
    """The built binary's path (it may not exist yet)."""
    peers = options.peers_dir or DEFAULT_PEERS_DIR
    cache = options.cache_dir or default_cache_dir()
    return cache / "echoip" / _source_version(peers)


def build_echoip(options: Options) -> None:
    """Build echoip with the shared build script unless built already; else ConfigUnavailable."""
    binary = echoip_binary(options)
    if os.access(binary, os.X_OK):
        return
    peers = options.peers_dir or DEFAULT_PEERS_DIR
    script = peers / BUILD_SCRIPT
    if not script.is_file():
        raise ConfigUnavailable(
            f"echoip skipped: {script} not found (its source and build script; --peers-dir DIR)"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    log = binary.with_name(binary.name + ".build.log")
    partial = binary.with_name(binary.name + ".partial")
    print(f"  echoip: building with {script} into {binary} (log: {log})", flush=True)
    with log.open("wb") as out:
        try:
            status = subprocess.run(
                ["bash", str(script), str(partial)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            ).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigUnavailable(f"echoip skipped: {script} failed: {exc}") from None
    if status != 0 or not os.access(partial, os.X_OK):
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise ConfigUnavailable(
            f"echoip skipped: {script} exited with status {status} ({last[0]}); see {log}"
        )
    partial.replace(binary)


def start_echoip(stack: Stack, options: Options) -> str:
    """echoip on the bundled GeoLite2 City database, on loopback only."""
    port = free_port()
    database = str(bundled_city_db())
    # -f takes a Country database and -c a City one: the City file answers both.
    argv = [str(echoip_binary(options)), "-l", f"127.0.0.1:{port}", "-f", database, "-c", database]
    stack.start("echoip", argv)
    return f"http://127.0.0.1:{port}"
