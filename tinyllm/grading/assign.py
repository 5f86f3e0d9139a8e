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
    source, work = Path(source), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, work / source.name)
    (work / "requirements.txt").write_text(requirements, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs", source.name, "dist"],
        cwd=work, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise AssignError(f"otter assign failed on {source}:\n{proc.stdout}\n{proc.stderr}")
    return work / "dist"


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
