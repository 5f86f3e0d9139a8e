"""Regenerate the learner notebooks from the instructor sources with ``otter assign``.

    python exercises/build.py              # every set in exercises/source/
    python exercises/build.py 05_attention # one set (the public tests' file is rebuilt from all)
    python exercises/build.py --zips DIR   # also copy each autograder archive into DIR (teachers)

First it keeps the first cell of every source the Colab setup cell and the last cell the
grading cell (``grade_this``). Writes ``exercises/NN_name.ipynb`` (solutions blanked,
public tests in the metadata, no hidden test), ``tinyllm/grading/public_tests.json``
(the public tests again, for Colab), ``tinyllm/grading/assignments/NN_name.json`` (every test,
the package data the grader uses), the cheating submissions ``exercises/cheats/*.ipynb``
(from ``exercises/cheats/manifest.json``) and the wrong-on-purpose submissions
``exercises/wrong/NN_name/*.ipynb`` (the learner notebook with the blanks filled by the
mistakes listed in ``exercises/wrong/manifest.json``).
``tests/test_exercises.py`` fails when any of them is out of date.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.sync_notebooks import sync  # noqa: E402
from teaching.build import (  # noqa: E402
    ASSIGNMENTS_DIR,
    CHEATS_MANIFEST,
    LEARNER_DIR,
    PUBLIC_TESTS_FILE,
    WRONG_MANIFEST,
    assign,
    assignment_data,
    cheat_submissions,
    public_tests_json,
    sources,
    write_learner,
    wrong_submissions,
)
from teaching.course import ROOT  # noqa: E402
from tinyllm.grade import GRADING_CELL_FIRST_LINE  # noqa: E402


def sync_setup_cell(source: Path) -> None:
    """Make the source's first code cell the course's Colab setup cell and its links absolute.

    The same rewrite as ``scripts/sync_notebooks.py``, so the learner notebooks that otter
    assign makes from the source need no second pass.
    """
    nb = nbformat.read(source, as_version=4)
    try:
        changed = sync(nb, source.relative_to(ROOT).as_posix())
    except ValueError as exc:
        raise SystemExit(f"{source}: {exc}") from exc
    if changed:
        nbformat.write(nb, source)
        print(f"updated the Colab setup cell or links of {source.name}")


def grading_cell_source(name: str) -> str:
    """The last cell of every exercise set: grade the notebook against the hidden tests."""
    return (
        f"{GRADING_CELL_FIRST_LINE}.\n"
        "# In Colab: the notebook as it is; elsewhere: the saved file (save it first).\n"
        "from tinyllm.grade import grade_this\n"
        "\n"
        f'grade_this("{name}.ipynb");'
    )


def sync_grading_cell(source: Path) -> None:
    """Make the source's last cell the grading cell (added if missing, updated if stale)."""
    nb = nbformat.read(source, as_version=4)
    expected = grading_cell_source(source.stem)
    last = nb.cells[-1] if nb.cells else None
    if last is not None and last.cell_type == "code" and last.source.startswith(GRADING_CELL_FIRST_LINE):
        if last.source == expected:
            return
        last.source = expected
    else:
        nb.cells.append(nbformat.v4.new_code_cell(expected))
    nbformat.write(nb, source)
    print(f"updated the grading cell of {source.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="sets to rebuild, e.g. 05_attention (default: all)")
    parser.add_argument("--zips", help="copy the autograder archives into this folder")
    args = parser.parse_args(argv)
    chosen = [s for s in sources() if not args.names or s.stem in args.names]
    for source in chosen:
        sync_setup_cell(source)
        sync_grading_cell(source)
    with tempfile.TemporaryDirectory() as tmp:
        with ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(lambda s: assign(s, Path(tmp) / s.stem), chosen))
        ASSIGNMENTS_DIR.mkdir(exist_ok=True)
        for source, a in zip(chosen, built):
            write_learner(a.learner, LEARNER_DIR / f"{a.name}.ipynb")
            print(f"wrote exercises/{a.name}.ipynb")
            data = assignment_data(source, a.autograder_zip.parent.parent)
            (ASSIGNMENTS_DIR / f"{a.name}.json").write_text(data, encoding="utf-8")
            print(f"wrote tinyllm/grading/assignments/{a.name}.json")
            if args.zips:
                Path(args.zips).mkdir(parents=True, exist_ok=True)
                shutil.copy(a.autograder_zip, Path(args.zips) / f"{a.name}-autograder.zip")
                print(f"wrote {Path(args.zips) / f'{a.name}-autograder.zip'}")
    learners = {
        s.stem: nbformat.read(LEARNER_DIR / f"{s.stem}.ipynb", as_version=4)
        for s in sources()
        if (LEARNER_DIR / f"{s.stem}.ipynb").is_file()
    }
    PUBLIC_TESTS_FILE.write_text(public_tests_json(learners), encoding="utf-8")
    print(f"wrote {PUBLIC_TESTS_FILE.relative_to(LEARNER_DIR.parent)}")
    manifest = json.loads(WRONG_MANIFEST.read_text(encoding="utf-8"))
    for path, nb in wrong_submissions(learners, manifest).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_learner(nb, path)
        print(f"wrote {path.relative_to(LEARNER_DIR.parent)}")
    cheats = json.loads(CHEATS_MANIFEST.read_text(encoding="utf-8"))
    for path, nb in cheat_submissions(learners, cheats).items():
        write_learner(nb, path)
        print(f"wrote {path.relative_to(LEARNER_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
