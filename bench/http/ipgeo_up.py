"""ipgeo as users run it: the venv's ``ipgeo up`` with a private data dir and their settings.

``ipgeo up`` starts its programs (Redis, the job worker, uWSGI, nginx) in process groups of
their own; the harness adopts each of them from the supervisor's state file, so the CPU of
every one of them, and of ``ipgeo up`` itself, is reported.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bench.http.processes import ReadyAnswer, Stack, StartError, free_port

if TYPE_CHECKING:
    from bench.http.configs import Options

# How the supervisor itself is named in the report (its children keep their own names).
SUPERVISOR = "ipgeo-up"
# What a user asks for: a few fields, in German.
QUERY_FIELDS = ("ip", "country_iso", "region", "city", "latitude", "longitude", "time_zone")
QUERY_SUFFIX = f"?fields={','.join(QUERY_FIELDS)}&lang=de"
# An allowlist and rate limits as a user would write them. The limits are far above what the
# load reaches: 1,000,000/minute is 16,700 req/s, which ipgeo exceeded on a quiet machine;
# 10,000,000/minute is above the machine's static-file ceiling (B0).
PROTECTED_SETTINGS = {
    "IPGEO_ALLOWED": "127.0.0.1;::1;10.0.0.0/8;172.16.0.0/12;192.168.0.0/16",
    "IPGEO_RATE_LIMIT": "10000000/minute;100000000/hour",
}


def ipgeo_command() -> str:
    """The venv's ``ipgeo`` console script (this very Python and its packages)."""
    path = Path(sys.executable).parent / "ipgeo"
    if not path.is_file():
        raise StartError(f"{path} not found: install ipgeo into this venv (`make`)")
    return str(path)


def up_starter(settings: Mapping[str, str]) -> Callable[[Stack, Options], str]:
    """A starter of ``ipgeo up --port P`` with ``settings`` (``IPGEO_*``) in its environment."""

    def start(stack: Stack, options: Options) -> str:
        port = free_port()
        env = dict(settings)
        if options.web_concurrency is not None:
            env["WEB_CONCURRENCY"] = str(options.web_concurrency)
        stack.start(
            SUPERVISOR,
            [ipgeo_command(), "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            grace_s=30,  # it stops nginx, uWSGI, the job worker and Redis in turn
        )
        return f"http://127.0.0.1:{port}"

    return start


def data_dir(stack: Stack) -> Path:
    """The private ``IPGEO_DATA_DIR`` of this run (set by the harness for every config)."""
    return Path(stack.env["IPGEO_DATA_DIR"])


def adopt_programs(stack: Stack, _: ReadyAnswer) -> None:
    """Adopt every program ``ipgeo up`` started, from its state file (``{name: pid}``)."""
    state_file = data_dir(stack) / "run" / "processes.json"
    try:
        children: dict[str, int] = json.loads(state_file.read_text())["children"]
    except (OSError, ValueError, KeyError) as exc:
        raise StartError(f"cannot read ipgeo up's state file {state_file}: {exc}") from None
    if "nginx" not in children:
        raise StartError(f"ipgeo up answers without nginx ({', '.join(children)}): not the product")
    for name, pid in children.items():
        stack.adopt(name, pid)  # each program leads its own session and process group


def check_query_answer(stack: Stack, answer: ReadyAnswer) -> None:
    """The query configuration: the answer has exactly the requested fields."""
    adopt_programs(stack, answer)
    fields = set(json.loads(answer.body))
    if fields != set(QUERY_FIELDS):
        raise StartError(f"asked for {sorted(QUERY_FIELDS)}, the answer has {sorted(fields)}")


def check_protected_answer(stack: Stack, answer: ReadyAnswer) -> None:
    """The protected configuration: the allowlist is in nginx and rate limits are counted."""
    adopt_programs(stack, answer)
    allowlist = (data_dir(stack) / "run" / "nginx" / "allowlist.conf").read_text()
    if "deny all;" not in allowlist:
        raise StartError("IPGEO_ALLOWED did not reach nginx's allowlist")
    if "RateLimit-Limit" not in answer.headers:
        raise StartError("no RateLimit-Limit header: IPGEO_RATE_LIMIT is not applied")
