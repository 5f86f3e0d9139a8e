"""A teacher's own instructor source, turned into tests: ``python -m tinyllm.grade --sources DIR``.

The packaged tests (``assignments/NN_name.json``) are made from the course's sources by the
repository's ``teaching/build.py``. A teacher grading against sources of their own runs
``otter assign`` on one here, in a temporary folder, and reads the tests from the archive
it makes. Nothing of the repository is needed, so this works from an installed package.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import nbformat

from tinyllm.grading.flags import package_imports

# A source's assignment config names requirements.txt: what a grading machine (Gradescope)
# installs. Grading here never reads it; the repository's build writes the full line.
REQUIREMENTS = "tinyllm[exercises]\n"


class AssignError(RuntimeError):
    """``otter assign`` failed on a source notebook."""


def run_otter_assign(source: Path, work: Path, requirements: str = REQUIREMENTS) -> Path:
    """Run ``otter assign`` on ``source`` in the folder ``work``; returns otter's ``dist/``."""
    return run_otter_assigns([(source, work)], requirements)[0]


# `otter assign --no-run-tests --no-pdfs SOURCE dist` of each copy, in its folder, all in one process: importing
# otter costs a process 1.1 s of CPU, assigning a source 0.3 s.
_ASSIGN_EACH = """import sys
from otter.assign import main
for copy in sys.argv[1:]:
    main(copy, copy.rsplit("/", 1)[0] + "/dist", no_run_tests=True, no_pdfs=True)
"""


def run_otter_assigns(jobs: list[tuple[Path, Path]], requirements: str = REQUIREMENTS) -> list[Path]:
    """:func:`run_otter_assign` of each ``(source, work)`` (a folder each), in one process."""
    copies = []
    for source, work in jobs:
        source, work = Path(source), Path(work).absolute()
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, work / source.name)
        (work / "requirements.txt").write_text(requirements, encoding="utf-8")
        copies.append(str(work / source.name))
    proc = subprocess.run([sys.executable, "-c", _ASSIGN_EACH, *copies], cwd=Path(copies[0]).parent,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        names = ", ".join(str(source) for source, _ in jobs)
        raise AssignError(f"otter assign failed on {names}:\n{proc.stdout}\n{proc.stderr}")
    return [Path(copy).parent / "dist" for copy in copies]


def archive(dist: Path, source: Path) -> Path:
    """The autograder archive (every test) otter assign made in ``dist``."""
    zips = sorted((Path(dist) / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise AssignError(f"otter assign made {len(zips)} autograder archives for {source}, expected 1")
    return zips[0]


def read_tests(source: Path, dist: Path) -> dict:
    """``{"tests": {question: otter test file}, "provided_imports": [...]}`` of an assigned
    source: the package modules its own learner notebook imports are not flagged in answers."""
    with zipfile.ZipFile(archive(dist, source)) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("tests/") and n.endswith(".py"))
        tests = {Path(n).stem: zf.read(n).decode("utf-8") for n in names}
    learner = nbformat.read(Path(dist) / "student" / Path(source).name, as_version=4)
    return {"tests": tests, "provided_imports": package_imports(learner)}


_ONE_AT_A_TIME = threading.Lock()  # graders of a folder (threads) wait for the first assign


def source_tests(source: Path) -> dict:
    """:func:`read_tests` of ``source``, assigned once per content of the file in a process."""
    with _ONE_AT_A_TIME:
        return _assigned(Path(source).resolve(), hashlib.sha256(Path(source).read_bytes()).hexdigest())


@functools.cache
def _assigned(source: Path, digest: str) -> dict:  # digest: a changed file is assigned again
    with tempfile.TemporaryDirectory(prefix="tinyllm-assign-") as work:
        return read_tests(source, run_otter_assign(source, Path(work)))
