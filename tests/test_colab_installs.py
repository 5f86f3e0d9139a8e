"""Colab left as it was found: what the notebooks install there replaces none of Colab's packages.

Colab is stood in for by its published package list (tests/data/colab-pip-freeze.txt, Python
3.13): an environment holding only those packages' metadata. pip resolves each install the
notebooks make in Colab against it, for Colab's Python and platform (``--dry-run --report``,
which needs the package index, as ``make`` does), and no package of Colab's may appear in
what pip would install. Two installs exist: an exercise set's setup cell (the grader) and
chapter 14's cell that adds the ONNX packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from scripts.colab_install_report import TARGET, colab_standin, run_in_fake_colab
from teaching.course import EXERCISE_PACKAGES, colab_setup_source

ROOT = Path(__file__).resolve().parent.parent
FREEZE = ROOT / "tests" / "data" / "colab-pip-freeze.txt"
CHAPTER_14 = ROOT / "chapters" / "14_ship_it.ipynb"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def _colab() -> dict[str, str]:
    rows = (line.split("==") for line in FREEZE.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#"))
    return {_norm(name): version for name, version in rows}


def _onnx_install_args(monkeypatch) -> list[str]:
    """pip's arguments when chapter 14's install cell runs in Colab: no ONNX package, and
    Colab's versions of everything else."""
    nb = nbformat.read(CHAPTER_14, as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "onnxruntime" in c.source
               and "subprocess.run" in c.source]
    real_find_spec, colab = importlib.util.find_spec, _colab()
    onnx_modules = {"onnx", "onnxscript", "onnxruntime"}

    def colab_version(name: str) -> str:
        if _norm(name) not in colab:
            raise importlib.metadata.PackageNotFoundError(name)
        return colab[_norm(name)]

    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in onnx_modules else real_find_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "version", colab_version)
    args = [a for a in run_in_fake_colab(cell.source) if a != "-q"]
    monkeypatch.undo()
    return args


def _new_enough_pip() -> list[str]:
    """A pip that resolves for another Python and platform in a dry run (pip >= 24)."""
    version = Version(importlib.metadata.version("pip"))
    assert version >= Version("24"), (
        f"pip {version} cannot resolve for Colab's Python: `make` installs a newer one"
    )
    return [sys.executable, "-m", "pip"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return colab_standin(tmp_path_factory.mktemp("colab") / "env")


def _resolve(args: list[str], standin: Path, report: Path) -> list[tuple[str, str]]:
    run = subprocess.run(
        [*_new_enough_pip(), "--python", str(standin), "install", "--dry-run", "--quiet",
         "--report", str(report), *TARGET, *args],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"pip could not resolve {args}:\n{run.stderr[-2000:]}"
    return [(_norm(i["metadata"]["name"]), i["metadata"]["version"])
            for i in json.loads(report.read_text())["install"]]


@pytest.mark.slow
def test_exercise_and_onnx_installs_replace_no_colab_package(standin, tmp_path, monkeypatch):
    colab = _colab()
    exercise = [a for a in run_in_fake_colab(colab_setup_source("exercise"))
                if a != "-q" and not a.startswith("tinyllm")]  # the package itself is new
    onnx = _onnx_install_args(monkeypatch)
    assert any(a.startswith("protobuf==") for a in onnx) or "protobuf" not in colab, (
        "chapter 14 must keep the protobuf the machine has (Colab pins it for its other packages)"
    )
    for name, args in (("an exercise set's setup cell", exercise), ("chapter 14's ONNX cell", onnx)):
        installs = _resolve(args, standin, tmp_path / f"{len(args)}.json")
        replaced = [f"{n} {colab[n]} -> {v}" for n, v in installs if n in colab]
        assert not replaced, f"{name} (pip install {' '.join(args)}) replaces Colab's {replaced}"
        assert installs, f"{name} installs nothing at all: the test would prove nothing"


def _with_requirements(names: set[str]) -> set[str]:
    """``names`` and, as installed here, their base requirements, recursively.

    Colab's packages bring what they need; this environment's versions of them may need
    other things (ipywidgets 8 imports comm, 7.7.1 does not), which are no fault of the cell.
    """
    todo, seen = list(names), set(names)
    while todo:
        try:
            requires = importlib.metadata.requires(todo.pop()) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in map(Requirement, requires):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                if _norm(req.name) not in seen:
                    seen.add(_norm(req.name))
                    todo.append(_norm(req.name))
    return seen


def test_exercise_cell_names_everything_the_grader_imports_beyond_colab():
    """With --no-deps, what otter and the grading cell import must be in Colab or in the cell.

    A child Python imports the learner's side of grading with every module blocked whose
    distribution is neither in Colab's list nor named by the cell.
    """
    allowed = _with_requirements(set(_colab())) | {"tinyllm"}
    allowed |= {_norm(Requirement(p).name) for p in EXERCISE_PACKAGES}
    blocked = sorted({
        module for module, dists in importlib.metadata.packages_distributions().items()
        if not any(_norm(d) in allowed for d in dists)
    })
    assert "playwright" in blocked, "the blocklist is not built from this environment"
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = set({blocked!r})
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is neither in Colab nor in the setup cell")
        sys.meta_path.insert(0, Block())
        import otter
        from otter.check.notebook import Notebook
        import otter.test_files
        import tinyllm.grade
        print("imported")
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "imported" in run.stdout, run.stderr[-3000:]
