"""The parity cases: HTTP requests through ``werkzeug.test.Client`` and ``ipgeo bulk`` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import quote

from werkzeug.test import Client

from bench.parity.inputs import (
    BATCH_VARIANTS,
    EDGE_CASES,
    LOOKUP_VARIANTS,
    OWN_VARIANTS,
    PLAIN_ENDPOINTS,
    SCOPED,
    Headers,
)
from bench.parity.store import kind_of, normalise
from ipgeo.settings import Settings
from ipgeo.web import create_app

IPGEO = Path(sys.executable).parent / "ipgeo"
BATCH_SIZE = 1000  # IPGEO_BATCH_LIMIT is set to this
Item = tuple[str, bytes]  # (key, normalised payload)


@dataclass(frozen=True)
class Case:
    """One stored file: a name and the items it yields."""

    name: str
    items: Callable[[], Iterator[Item]]
    subprocess: bool = False  # runs ``ipgeo bulk``: may overlap with the in-process cases


@dataclass
class Run:
    """One configuration: its ``IPGEO_*`` environment, addresses and bulk runs."""

    name: str
    env: dict[str, str]
    addresses: list[str]  # all of them: single lookups, batch, bulk list
    every: int  # variants for every n-th address (and all edge cases)
    own_every: int  # /json, /ip and the plain field endpoints for every n-th address
    bulk_runs: tuple[tuple[str, str, tuple[str, ...]], ...]  # (name, kind, arguments)
    workdir: Path  # holds the bulk input files
    clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        """A test client on the app built from ``env`` (built once)."""
        if not self.clients:
            app = create_app(Settings.from_env(self.env))
            self.clients.append(Client(app, use_cookies=False))
        return self.clients[0]

    def subset(self, every: int) -> list[str]:
        """The edge cases and every ``every``-th other address."""
        return list(EDGE_CASES) + self.addresses[len(EDGE_CASES) :: every]


def request(
    client: Client,
    path: str,
    query: str = "",
    headers: Headers = (),
    remote: str = "127.0.0.1",
    data: bytes | None = None,
    key: str = "",
) -> Item:
    """One request's status line (status, content type) and normalised body."""
    url = path + ("?" + query if query else "")
    response = client.open(
        url,
        method="GET" if data is None else "POST",
        headers=list(headers),
        data=data,
        content_type="application/json" if data is not None else None,
        environ_base={"REMOTE_ADDR": remote},
    )
    content_type = response.headers.get("Content-Type", "")
    head = f"{response.status_code} {content_type}\n".encode()
    if not key:
        shown = "".join(f" [{name}: {value}]" for name, value in headers)
        key = f"{'GET' if data is None else 'POST'} {url}{shown} from {remote!r}"
    return key, head + normalise(kind_of(content_type), response.get_data())


def _path(ip: str) -> str:
    return "/api/v1/lookup/" + quote(ip, safe=":")


def lookups(run: Run) -> Iterator[Item]:
    """``GET /api/v1/lookup/<ip>`` for every address, no query string."""
    client = run.client()
    for ip in run.addresses:
        yield request(client, _path(ip))


def lookup_variants(run: Run) -> Iterator[Item]:
    """Every format, fields, lang and Accept variant for a subset of the addresses."""
    client = run.client()
    for ip in run.subset(run.every):
        for query, headers in LOOKUP_VARIANTS:
            yield request(client, _path(ip), query, headers)


def own_lookups(run: Run) -> Iterator[Item]:
    """``/json`` (with its variants), ``/ip`` and the plain field endpoints for a subset."""
    client = run.client()
    for ip in run.subset(run.own_every):
        for query, headers in OWN_VARIANTS:
            yield request(client, "/json", query, headers, remote=ip)
        yield request(client, "/ip", remote=ip)
        for name in PLAIN_ENDPOINTS:
            yield request(client, f"/{name}", "ip=" + quote(ip, safe=":"), remote="127.0.0.1")
        yield request(client, "/city", "lang=de", remote=ip)


def batches(run: Run) -> Iterator[Item]:
    """``POST /api/v1/batch`` of all addresses in chunks, per fields/lang variant; bad bodies."""
    client = run.client()
    addresses = [ip for ip in run.addresses if ip not in SCOPED]
    for query in BATCH_VARIANTS:
        for start in range(0, len(addresses), BATCH_SIZE):
            chunk = addresses[start : start + BATCH_SIZE]
            key = f"POST /api/v1/batch?{query} [{start}:{start + len(chunk)}]"
            yield request(client, "/api/v1/batch", query, data=_json(chunk), key=key)
    bad = [b"", b"[", b'{"a": 1}', b'["8.8.8.8", 1]', b"[]", _json(["8.8.8.8"] * 1001)]
    bad += [_json(["8.8.8.8", ip]) for ip in SCOPED]
    for number, body in enumerate(bad):
        yield request(client, "/api/v1/batch", data=body, key=f"POST bad body {number}")
    yield request(client, "/api/v1/batch", "fields=bogus", data=_json(["8.8.8.8"]))
    yield request(client, "/api/v1/batch", "lang=..", data=_json(["8.8.8.8"]))


def _json(items: list[str]) -> bytes:
    return json.dumps(items, separators=(",", ":")).encode()


def bulk(run: Run, kind: str, arguments: tuple[str, ...]) -> Iterator[Item]:
    """One ``ipgeo bulk`` run: exit status, stderr, stdout and the ``-o`` file if any."""
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "TZ": "UTC"}
    env |= {"HOME": str(run.workdir), "PYTHONHASHSEED": "0"} | run.env
    output = arguments[arguments.index("-o") + 1] if "-o" in arguments else None
    done = subprocess.run(
        [str(IPGEO), "bulk", *arguments], cwd=run.workdir, env=env, capture_output=True, check=False
    )
    yield "exit status", str(done.returncode).encode()
    yield "stderr", done.stderr
    yield "stdout", normalise("summary" if output else kind, done.stdout)
    if output:
        yield output, normalise(kind, (run.workdir / output).read_bytes())


def cases(run: Run) -> list[Case]:
    """The cases of one run, in recording order."""
    found = [
        Case(f"{run.name}.lookup", lambda: lookups(run)),
        Case(f"{run.name}.lookup-variants", lambda: lookup_variants(run)),
        Case(f"{run.name}.own", lambda: own_lookups(run)),
        Case(f"{run.name}.batch", lambda: batches(run)),
    ]
    for name, kind, arguments in run.bulk_runs:
        found.append(Case(f"{run.name}.bulk-{name}", partial(bulk, run, kind, arguments), True))
    return found
