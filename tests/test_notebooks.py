"""Checks on the committed notebooks themselves (nbval separately re-executes the chapters)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from teaching.course import (
    SETUP_CELL_FIRST_LINE,
    SETUP_CELL_TAG,
    book_url,
    colab_setup_source,
    relative_link_targets,
    repository_branch,
    repository_url,
    setup_kind,
)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
LEARNER_EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
EXERCISE_SOURCES = sorted((ROOT / "exercises" / "source").glob("[0-9][0-9]_*.ipynb"))
WRONG_SUBMISSIONS = sorted((ROOT / "exercises" / "wrong").glob("*/*.ipynb"))
ALL_NOTEBOOKS = CHAPTERS + LEARNER_EXERCISES + EXERCISE_SOURCES + WRONG_SUBMISSIONS


def _toc_files() -> list[str]:
    return re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", (ROOT / "_toc.yml").read_text(), flags=re.MULTILINE)


def _code_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 3


def test_toc_lists_exactly_the_files_that_exist():
    listed = _toc_files()
    for entry in listed:
        candidates = (ROOT / entry).parent.glob(Path(entry).name + ".*")
        matches = [p for p in candidates if p.suffix in (".md", ".ipynb")]
        assert matches, f"_toc.yml lists {entry}, which does not exist"
    for path in CHAPTERS + LEARNER_EXERCISES:
        rel = path.relative_to(ROOT).with_suffix("").as_posix()
        assert rel in listed, f"{rel} is not in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_was_executed_top_to_bottom(path):
    counts = [c.execution_count for c in _code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name} was not executed top to bottom in one fresh kernel: execution counts {counts}; "
        "run scripts/run_notebook.py on it"
    )
    errors = [o for c in _code_cells(path) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} has committed error outputs"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_teaches_with_a_figure_an_assert_and_a_summary(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "opens with a title"
    assert re.search(r"\bassert\b|assert_close", code), "at least one real check"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "at least one figure"
    assert re.search(r"^#+ What you learned", prose, flags=re.MULTILINE), "a closing summary"


# A chapter's scratch folder goes when the chapter is done with it: one made with
# tempfile.mkdtemp, or a TemporaryDirectory never cleaned up, stays in the temporary folder
# after every run (the suite's too: nbval stops kernels with a kill, so no finalizer runs).
MKDTEMP = re.compile(r"\bmkdtemp\s*\(")
NAMED_SCRATCH = re.compile(r"^\s*(\w+)\s*=\s*tempfile\.TemporaryDirectory\(", flags=re.MULTILINE)


def folders_left_behind(code: str) -> list[str]:
    """The scratch folders ``code`` (a notebook's code cells, in order) makes and never removes."""
    left = [line.strip() for line in code.splitlines() if MKDTEMP.search(line)]
    for match in NAMED_SCRATCH.finditer(code):
        if f"{match.group(1)}.cleanup()" not in code[match.end():]:
            left.append(f"{match.group(1)} = tempfile.TemporaryDirectory(...) without {match.group(1)}.cleanup()")
    return left


def test_the_check_of_scratch_folders_can_fail():
    assert folders_left_behind("work = Path(tempfile.mkdtemp())")
    assert folders_left_behind("scratch = tempfile.TemporaryDirectory()\nwork = Path(scratch.name)")
    assert not folders_left_behind("scratch = tempfile.TemporaryDirectory()\nx = 1\nscratch.cleanup()")
    assert not folders_left_behind("with tempfile.TemporaryDirectory() as folder:\n    pass")


@pytest.mark.parametrize("path", CHAPTERS + EXERCISE_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_notebooks_scratch_folders_are_removed_when_it_is_done_with_them(path):
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    left = folders_left_behind(code)
    assert not left, f"{path.name} leaves folders behind: {left}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_colab_setup_cell_is_generated_from_config_and_hidden_in_the_book(path):
    kind = setup_kind(path.relative_to(ROOT))
    expected = colab_setup_source(kind)
    assert f"{repository_url()}@{repository_branch()}" in expected
    cells = _code_cells(path)
    assert cells, f"{path.name} has no code cell"
    first = cells[0]
    assert first.source.startswith(SETUP_CELL_FIRST_LINE), (
        f"{path.name}: the first code cell is not the Colab setup cell"
    )
    assert first.source == expected, (
        f"{path.name}: the Colab setup cell differs from the {kind} cell generated from _config.yml; "
        "run scripts/sync_notebooks.py"
    )
    assert SETUP_CELL_TAG in first.metadata.get("tags", []), (
        f"{path.name}: the setup cell lacks the {SETUP_CELL_TAG!r} tag that hides it in the book; "
        "run scripts/sync_notebooks.py"
    )
    others = [c for c in cells[1:] if c.source.startswith(SETUP_CELL_FIRST_LINE)]
    assert not others, f"{path.name} has a second setup cell"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_work_in_a_lone_colab_notebook(path):
    """A relative link (``02_bigram_model.ipynb``, ``../book/grading.md``) leads nowhere in a
    notebook opened alone in Colab; links to other pages point at the published book."""
    nb = nbformat.read(path, as_version=4)
    relative = [t for c in nb.cells if c.cell_type == "markdown" for t in relative_link_targets(c.source)]
    assert relative == [], f"{path.name} has relative links {relative}: run scripts/sync_notebooks.py"


def test_links_to_the_book_name_pages_that_exist():
    pages = {Path(entry).as_posix() for entry in _toc_files()}
    prefix = book_url()
    pattern = re.compile(re.escape(prefix) + r"([\w/.-]+?)\.html")
    seen = set()
    for path in ALL_NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                seen.update(pattern.findall(cell.source))
    assert seen, "no notebook links to another page of the book"
    missing = sorted(seen - pages)
    assert missing == [], f"links to book pages that _toc.yml does not list: {missing}"


def test_repository_url_is_written_once():
    url = repository_url()
    offenders = []
    skipped = {".git", ".venv", "_build", "node_modules", "_vendor"}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in skipped]  # never walk into them
        for path in (Path(folder) / name for name in files):
            if path.suffix not in {".md", ".yml", ".py", ".toml", ".cfg"} or path.name == "_config.yml":
                continue
            if url in path.read_text(encoding="utf-8", errors="ignore"):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == [], (
        f"the repository url must be written only in _config.yml, also found in {offenders}"
    )


def test_notebooks_are_valid_json():
    for path in CHAPTERS + LEARNER_EXERCISES:
        json.loads(path.read_text(encoding="utf-8"))
