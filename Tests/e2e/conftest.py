"""Fixtures for the end-to-end CLI tests: the built `isthmus` binary and the venv's Python.

The binary is `$ISTHMUS_BIN`, else `.build/debug/isthmus` (build it with
`swift build --product isthmus`). Python is `$ISTHMUS_PYTHON`, else `.venv/bin/python`,
else the interpreter running pytest.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ROOT, binary_path as _binary, python_bin as _python  # noqa: E402,F401


@dataclass
class Result:
    """What one CLI run did."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


class CLI:
    """Runs `isthmus` with a timeout; stdout as bytes, stderr as text."""

    def __init__(self, binary: str, python: str) -> None:
        self.binary = binary
        self.python = python

    def __call__(self, *args: str, input: bytes | None = None, cwd: str | Path | None = None,
                 timeout: float = 60) -> Result:
        env = dict(os.environ)
        env.setdefault("ISTHMUS_PYTHON", self.python)
        p = subprocess.run([self.binary, *map(str, args)], input=input, capture_output=True,
                           timeout=timeout, cwd=cwd, env=env)
        return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="session")
def isthmus_binary() -> str:
    path = _binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"expected the isthmus binary at {path}: run `swift build --product isthmus` or set ISTHMUS_BIN",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def venv_python() -> str:
    return _python()


@pytest.fixture(scope="session")
def cli(isthmus_binary: str, venv_python: str) -> CLI:
    return CLI(isthmus_binary, venv_python)
