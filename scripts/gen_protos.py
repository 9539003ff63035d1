"""Generate the Python stubs of proto/ into tokenwire/ (or check they are fresh).

Usage: python scripts/gen_protos.py [--check]
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
VENDOR = ROOT / "third_party" / "googleapis"
OUT = ROOT / "tokenwire"
BIN = Path(sys.executable).parent  # the plugins live beside the interpreter


def generate(into: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{VENDOR}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            f"--python_out={into}",
            f"--mypy_out={into}",
            f"--grpc_python_out={into}",
            f"--mypy_grpc_out={into}",
            *sources,
        ],
        check=True,
        stdout=subprocess.DEVNULL,  # the mypy plugin lists every file it writes
    )
    for folder in (into / "tokenwire").rglob("*"):
        if folder.is_dir():
            (folder / "__init__.py").touch()
    (into / "tokenwire" / "__init__.py").write_text(
        '"""Generated protobuf and gRPC stubs of tokenwire."""\n'
    )


def stale(fresh: Path) -> list[str]:
    compare = filecmp.dircmp(fresh, OUT, ignore=["__pycache__"])
    problems: list[str] = []

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        problems.extend(f"{prefix}{n}" for n in c.left_only + c.right_only + c.diff_files)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(compare, "tokenwire/")
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if "--check" in sys.argv:
            problems = stale(Path(tmp) / "tokenwire")
            for p in problems:
                print(f"stale stub: {p}", file=sys.stderr)
            if problems:
                print("run: python scripts/gen_protos.py", file=sys.stderr)
            return 1 if problems else 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(Path(tmp) / "tokenwire", OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
