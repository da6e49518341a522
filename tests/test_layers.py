"""The layers of docs/architecture.md: what each package may import (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ipgeo"

# (modules, import prefixes they must never use)
RULES = [
    ("geo", ("flask", "werkzeug", "redis", "rq", "ipgeo.web", "ipgeo.bulk", "ipgeo.jobs")),
    ("bulk", ("flask", "werkzeug", "redis", "rq", "dns", "ipgeo.web", "ipgeo.jobs")),
    ("jobs", ("flask", "werkzeug", "ipgeo.web")),
    ("clientip.py", ("flask", "werkzeug", "ipgeo.web")),
    ("allowlist.py", ("flask", "werkzeug", "ipgeo.web")),
    ("visits.py", ("flask", "werkzeug", "ipgeo.web")),
    ("webservice.py", ("flask", "werkzeug", "ipgeo.web")),
    ("web", ("ipgeo.up", "ipgeo.cli")),
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _modules(name: str) -> list[Path]:
    target = SRC / name
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize(("name", "forbidden"), RULES, ids=[name for name, _ in RULES])
def test_a_layer_imports_nothing_above_it(name: str, forbidden: tuple[str, ...]) -> None:
    for path in _modules(name):
        for module in _imports(path):
            bad = [
                prefix
                for prefix in forbidden
                if module == prefix or module.startswith(f"{prefix}.")
            ]
            assert not bad, f"{path.relative_to(SRC)} imports {module}"


def test_only_the_kernel_opens_databases_and_walks_trees() -> None:
    walking = {"SearchTree", "TreeWalker"}
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(SRC / "geo"):
            continue
        for module in _imports(path):
            assert module != "maxminddb" and not module.startswith("maxminddb."), path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ipgeo.geo.tree":
                names = {alias.name for alias in node.names}
                assert not names & walking, f"{path.relative_to(SRC)} walks a search tree"
