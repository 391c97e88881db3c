"""Shared helpers for the end-to-end tests: find the CLI and the Python, run commands."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UDFS = Path(__file__).resolve().parent / "udfs"


def binary_path() -> str:
    """`$ISTHMUS_BIN`, else the debug build."""
    return os.environ.get("ISTHMUS_BIN") or str(ROOT / ".build" / "debug" / "isthmus")


def isthmus_bin() -> str:
    path = binary_path()
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"expected the isthmus binary at {path}; run `swift build` or set ISTHMUS_BIN")
    return path


def python_bin() -> str:
    """`$ISTHMUS_PYTHON`, else the repository's .venv, else the interpreter running the tests."""
    if os.environ.get("ISTHMUS_PYTHON"):
        return os.environ["ISTHMUS_PYTHON"]
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None, input: bytes | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.setdefault("ISTHMUS_PYTHON", python_bin())
    if env:
        full_env.update(env)
    return subprocess.run([isthmus_bin(), *args], capture_output=True, timeout=timeout, env=full_env,
                          input=input, cwd=cwd)


def udf(name: str) -> str:
    return str(UDFS / name)
