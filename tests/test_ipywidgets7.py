"""The widgets work with Colab's ipywidgets 7.7.1 as well as with version 8.

This run has ipywidgets 8 (constraints.txt). The last test builds a second, small
environment with Colab's ipywidgets 7.7.1 (scripts/widgets7_env.py, cached under .venv/)
and runs every widget module's import and every ``tests/test_widget_*.py`` in it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
from pathlib import Path

import ipywidgets
import pytest

import tinyllm.widgets
from scripts.widgets7_env import build

ROOT = Path(__file__).resolve().parent.parent
WIDGET_MODULES = sorted(m.name for m in pkgutil.iter_modules(tinyllm.widgets.__path__))
WIDGET_TESTS = sorted((ROOT / "tests").glob("test_widget_*.py"))


def test_every_widget_module_has_a_widget_test():
    assert WIDGET_MODULES, "no widget module found"
    tested = "\n".join(p.read_text(encoding="utf-8") for p in WIDGET_TESTS)
    untested = [m for m in WIDGET_MODULES if f"tinyllm.widgets.{m}" not in tested]
    assert untested == [], f"widget modules without a tests/test_widget_*.py that imports them: {untested}"


@pytest.mark.parametrize("name", WIDGET_MODULES)
def test_widget_module_imports(name):
    importlib.import_module(f"tinyllm.widgets.{name}")


def test_widget_tests_pass_with_colabs_ipywidgets_7():
    python = build()
    imports = "; ".join(f"import tinyllm.widgets.{m}" for m in WIDGET_MODULES)
    check = subprocess.run(
        [str(python), "-c", f"import ipywidgets; print(ipywidgets.__version__); {imports}"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "7.7.1"
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", "-W",
         "ignore::DeprecationWarning", *map(str, WIDGET_TESTS)],
        capture_output=True, text=True, cwd=ROOT,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, f"widget tests under ipywidgets 7.7.1: {summary}\n{run.stdout[-3000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and not re.search(r"failed|error|skipped", summary), summary
    print(f"ipywidgets 7.7.1: {summary}")
    assert ipywidgets.__version__.startswith("8"), "this run itself tests version 8"
