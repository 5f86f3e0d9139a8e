"""Checks on the committed notebooks themselves (nbval separately re-executes the chapters)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from tinyllm.course import SETUP_CELL_FIRST_LINE, colab_setup_source, repository_url

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
LEARNER_EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
EXERCISE_SOURCES = sorted((ROOT / "exercises" / "source").glob("[0-9][0-9]_*.ipynb"))


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
        matches = [p for p in (ROOT / entry).parent.glob(Path(entry).name + ".*") if p.suffix in (".md", ".ipynb")]
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
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "at least one figure"
    assert re.search(r"^#+ What you learned", prose, flags=re.MULTILINE), "a closing summary"


@pytest.mark.parametrize(
    "path", CHAPTERS + LEARNER_EXERCISES + EXERCISE_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_colab_setup_cell_is_identical_and_in_sync_with_config(path):
    expected = colab_setup_source()
    assert repository_url() in expected
    cells = _code_cells(path)
    assert cells, f"{path.name} has no code cell"
    first = cells[0].source
    assert first.startswith(SETUP_CELL_FIRST_LINE), f"{path.name}: the first code cell is not the Colab setup cell"
    assert first == expected, (
        f"{path.name}: the Colab setup cell differs from the one generated from _config.yml; "
        "run scripts/run_notebook.py (chapters) or rebuild the exercises"
    )


def test_repository_url_is_written_once():
    url = repository_url()
    offenders = []
    for path in ROOT.rglob("*"):
        if any(part in {".git", ".venv", "_build", "node_modules", "_vendor"} for part in path.parts):
            continue
        if path.suffix in {".md", ".yml", ".py", ".toml", ".cfg"} and path.name != "_config.yml":
            if url in path.read_text(encoding="utf-8", errors="ignore"):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == [], f"the repository url must be written only in _config.yml, also found in {offenders}"


def test_notebooks_are_valid_json():
    for path in CHAPTERS + LEARNER_EXERCISES:
        json.loads(path.read_text(encoding="utf-8"))
