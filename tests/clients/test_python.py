"""clients/python (tokenwire-api) stays light and is the version the server asks for."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
# The import roots each declared dependency provides (and the standard library's warnings).
PROVIDES = {"grpcio": {"grpc"}, "protobuf": {"google"}, "googleapis-common-protos": {"google"}}


def project(pyproject: Path) -> dict[str, object]:
    table: dict[str, object] = tomllib.loads(pyproject.read_text())["project"]
    return table


def names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements}


def imported_roots(module: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_stubs_depend_only_on_grpcio_protobuf_and_googleapis() -> None:
    assert names(project(CLIENT / "pyproject.toml")["dependencies"]) == set(PROVIDES)
    allowed = set.union(*PROVIDES.values()) | {"tokenwire", "warnings"}
    modules = list((CLIENT / "tokenwire").rglob("*.py"))
    assert len(modules) > 20
    used = set.union(*(imported_roots(m) for m in modules))
    assert used <= allowed, used - allowed


def test_the_server_depends_on_this_version_of_the_stubs() -> None:
    client = project(CLIENT / "pyproject.toml")
    server = project(ROOT / "pyproject.toml")["dependencies"]
    assert isinstance(server, list)
    assert f"{client['name']}=={client['version']}" in server
