"""Generate the clients of proto/ in every language (or check they are fresh).

Usage: python scripts/gen_protos.py [--check]

`buf generate` runs buf.gen.yaml's local plugins into a scratch folder; this adds the Python
package markers (protoc writes no `__init__.py`, PEP 561 wants `py.typed`), then replaces each
generated tree, or with `--check` compares them: a stale file in any language fails.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path("clients/python/tokenwire")
TYPESCRIPT = Path("clients/typescript/src/gen")
TREES = (PYTHON, TYPESCRIPT)
BUF = Path(sys.executable).parent / "buf"  # buf-bin, beside the interpreter
PLUGIN = ROOT / "clients/typescript/node_modules/.bin/protoc-gen-es"


def generate(into: Path) -> None:
    if not PLUGIN.exists():
        raise SystemExit(f"missing {PLUGIN.relative_to(ROOT)}: run scripts/setup (npm ci)")
    subprocess.run([BUF, "generate", "--output", into], cwd=ROOT, check=True)
    package = into / PYTHON
    for folder in [package, *(p for p in package.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (package / "__init__.py").write_text('"""Generated protobuf and gRPC stubs of tokenwire."""\n')
    (package / "py.typed").touch()


def stale(fresh: Path, committed: Path, prefix: str) -> list[str]:
    if not committed.is_dir():
        return [prefix]
    compare = filecmp.dircmp(fresh, committed, ignore=["__pycache__"])
    problems = [f"{prefix}/{n}" for n in compare.left_only + compare.right_only]
    problems += [f"{prefix}/{n}" for n in compare.diff_files]
    for name in compare.subdirs:
        problems += stale(fresh / name, committed / name, f"{prefix}/{name}")
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if "--check" in sys.argv:
            problems = [p for t in TREES for p in stale(Path(tmp) / t, ROOT / t, str(t))]
            for p in problems:
                print(f"stale generated file: {p}", file=sys.stderr)
            if problems:
                print("run: python scripts/gen_protos.py", file=sys.stderr)
            return 1 if problems else 0
        for tree in TREES:
            shutil.rmtree(ROOT / tree, ignore_errors=True)
            shutil.copytree(Path(tmp) / tree, ROOT / tree)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
