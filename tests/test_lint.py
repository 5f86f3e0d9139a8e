"""Lint: ruff over the course's Python files (rules and exceptions in pyproject.toml), and
what can be checked here of Python 3.13, the version Colab runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["tinyllm", "teaching", "tests", "scripts", "benchmarks", "exercises/build.py", "conftest.py"]
# PEP 594: standard-library modules that Python 3.13 no longer has.
REMOVED_IN_3_13 = {
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap", "msilib",
    "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
}


def _python_files() -> list[Path]:
    files = []
    for entry in LINTED:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *LINTED], capture_output=True, text=True, cwd=ROOT
    )


def test_ruff_finds_nothing():
    result = _ruff("check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, (
        "ruff found problems (fix them, or `ruff check --fix`):\n" + result.stdout + result.stderr
    )


def test_sources_parse_as_python_3_13():
    # ruff's parser reports syntax that the target version does not accept.
    result = _ruff("check", "--no-cache", "--select", "E9", "--target-version", "py313")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_removed_in_python_3_13_is_imported():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            removed = [n for n in names if n.split(".")[0] in REMOVED_IN_3_13]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in removed]
    assert offenders == [], f"imports of modules Python 3.13 removed: {offenders}"
