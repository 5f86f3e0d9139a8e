"""The course plumbing: setup cells and links generated from _config.yml, and the script
that keeps the notebooks in line with them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from scripts.sync_notebooks import notebooks, sync_file
from teaching.course import (
    CHAPTER_PACKAGES,
    EXERCISE_PACKAGES,
    SETUP_CELL_FIRST_LINE,
    SETUP_CELL_TAG,
    absolute_link,
    absolute_links,
    apply_setup_cell,
    book_url,
    colab_setup_source,
    relative_link_targets,
    repository_branch,
    repository_url,
    setup_kind,
)

ROOT = Path(__file__).resolve().parent.parent
COLAB_FREEZE = ROOT / "tests" / "data" / "colab-pip-freeze.txt"


def _config(tmp_path, url="https://github.com/Some-Owner/course", branch="book"):
    path = tmp_path / "_config.yml"
    path.write_text(f'title: x\nrepository:\n  url: {url}\n  branch: "{branch}"\nhtml:\n  a: 1\n')
    return path


def _colab_versions() -> dict[str, Version]:
    versions = {}
    for line in COLAB_FREEZE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            versions[name.lower().replace("_", "-")] = Version(version)
    return versions


def _base_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"]]


def _run_setup_cell(source: str, in_colab: bool, monkeypatch) -> list[list[str]]:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "setup-cell", "exec"), {})
    return calls


# --- values from _config.yml ------------------------------------------------------------


def test_url_branch_and_book_address_come_from_the_config(tmp_path):
    config = _config(tmp_path)
    assert repository_url(config) == "https://github.com/Some-Owner/course"
    assert repository_branch(config) == "book"
    # GitHub Pages lower-cases the owner; the repository name stays as written.
    assert book_url(config) == "https://some-owner.github.io/course/"
    assert book_url(_config(tmp_path, url="https://github.com/me/me.github.io")) == "https://me.github.io/"
    assert book_url() == f"https://tinyllm-course.github.io/{repository_url().rsplit('/', 1)[1]}/"


def test_missing_or_foreign_values_are_errors(tmp_path):
    path = tmp_path / "_config.yml"
    path.write_text("repository:\n  url: https://github.com/a/b\n")
    with pytest.raises(ValueError, match="no repository.branch"):
        repository_branch(path)
    with pytest.raises(ValueError, match="not a https://github.com/<owner>/<repo> url"):
        book_url(_config(tmp_path, url="https://gitlab.com/a/b"))


# --- the setup cells ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chapter", "exercise"])
def test_setup_cell_installs_the_named_branch_in_colab_only(kind, monkeypatch, tmp_path):
    config = _config(tmp_path)
    source = colab_setup_source(kind, config)
    assert source.startswith(SETUP_CELL_FIRST_LINE)
    assert all(len(line) <= 88 for line in source.splitlines()), "code lines stay within 88 characters"
    assert _run_setup_cell(source, in_colab=False, monkeypatch=monkeypatch) == []
    (args,) = _run_setup_cell(source, in_colab=True, monkeypatch=monkeypatch)
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    package = next(a for a in args if a.startswith("tinyllm"))
    assert package.endswith(" @ git+https://github.com/Some-Owner/course@book")
    assert package.startswith("tinyllm @"), "the package alone, no extra: --no-deps ignores extras"
    assert "--no-deps" in args, "nothing of Colab's may be replaced"
    assert set(CHAPTER_PACKAGES if kind == "chapter" else EXERCISE_PACKAGES) <= set(args)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="kind must be one of chapter, exercise, got 'lesson'"):
        colab_setup_source("lesson")


def test_setup_kind_follows_the_folder():
    assert setup_kind("chapters/05_self_attention.ipynb") == "chapter"
    assert setup_kind(Path("exercises/05_attention.ipynb")) == "exercise"
    assert setup_kind("exercises/source/05_attention.ipynb") == "exercise"
    assert setup_kind("exercises/wrong/05_attention/a.ipynb") == "exercise"


def test_chapter_install_replaces_nothing_colab_ships():
    """In Colab a chapter installs with --no-deps: every base dependency it does not name
    must already be there, at a version the package accepts (ipywidgets 7.7.1 included)."""
    colab = _colab_versions()
    assert colab["ipywidgets"] == Version("7.7.1"), "the stand-in is Colab's list"
    named = {Requirement(p).name for p in CHAPTER_PACKAGES}
    for req in _base_dependencies():
        if req.name in named:
            assert req.name not in colab, f"Colab ships {req.name}: the chapter cell need not install it"
            continue
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.13"}):
            continue
        assert req.name in colab, f"Colab does not ship {req.name}; the chapter cell must install it"
        assert req.specifier.contains(colab[req.name], prereleases=True), (
            f"the package asks for {req}, Colab has {req.name} {colab[req.name]}"
        )


def test_apply_setup_cell_replaces_tags_and_inserts(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell(SETUP_CELL_FIRST_LINE + "\nold", metadata={"tags": ["keep-me"]}),
    ])
    assert apply_setup_cell(nb, "chapter") is True
    assert nb.cells[1].source == colab_setup_source("chapter")
    assert nb.cells[1].metadata["tags"] == ["keep-me", SETUP_CELL_TAG]
    assert apply_setup_cell(nb, "chapter") is False, "a second pass changes nothing"
    assert apply_setup_cell(nb, "exercise") is True
    cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1")]
    bare = nbformat.v4.new_notebook(cells=cells)
    with pytest.raises(ValueError, match="not the Colab setup cell"):
        apply_setup_cell(bare, "chapter")
    assert apply_setup_cell(bare, "chapter", insert=True) is True
    assert [c.cell_type for c in bare.cells] == ["markdown", "code", "code"]
    assert bare.cells[1].source.startswith(SETUP_CELL_FIRST_LINE) and bare.cells[2].source == "x = 1"


# --- links --------------------------------------------------------------------------------


def test_relative_links_become_book_or_repository_addresses(tmp_path):
    config = _config(tmp_path)
    book = "https://some-owner.github.io/course/"
    page = "chapters/05_self_attention.ipynb"
    assert absolute_link("06_block.ipynb", page, config) == book + "chapters/06_block.html"
    assert absolute_link("../exercises/05_attention.ipynb#q1", page, config) == (
        book + "exercises/05_attention.html#q1"
    )
    assert absolute_link("../book/grading.md", page, config) == book + "book/grading.html"
    assert absolute_link("../tinyllm/model.py", page, config) == (
        "https://github.com/Some-Owner/course/blob/book/tinyllm/model.py"
    )
    for kept in ("https://example.org/x.ipynb", "#a-heading", "mailto:a@b.c"):
        assert absolute_link(kept, page, config) == kept
    with pytest.raises(ValueError, match="outside the repository"):
        absolute_link("../../elsewhere.md", page, config)


def test_absolute_links_rewrites_markdown_and_html_links_but_not_images(tmp_path):
    config = _config(tmp_path)
    text = (
        'See [the next chapter](06_block.ipynb "next") and <a href="../book/intro.md">the intro</a>; '
        "![a figure](figure.png), [web](https://example.org)."
    )
    assert relative_link_targets(text) == ["06_block.ipynb", "../book/intro.md"]
    fixed = absolute_links(text, "chapters/05.ipynb", config)
    assert relative_link_targets(fixed) == []
    assert '[the next chapter](https://some-owner.github.io/course/chapters/06_block.html "next")' in fixed
    assert '<a href="https://some-owner.github.io/course/book/intro.html">' in fixed
    assert "![a figure](figure.png)" in fixed and "[web](https://example.org)" in fixed


# --- the sync script ----------------------------------------------------------------------


def test_sync_script_covers_every_notebook():
    found = {p.relative_to(ROOT).parts[0] for p in notebooks()}
    assert found == {"chapters", "exercises"}
    assert any("wrong" in p.parts for p in notebooks()) and any("source" in p.parts for p in notebooks())


def test_sync_touches_only_the_setup_cell_and_links_and_is_idempotent(tmp_path):
    chapter = sorted((ROOT / "chapters").glob("0[1-9]_*.ipynb"))[0]
    root = tmp_path / "repo"
    (root / "chapters").mkdir(parents=True)
    copy = root / "chapters" / chapter.name
    shutil.copy(chapter, copy)
    nb = nbformat.read(copy, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    setup.source = SETUP_CELL_FIRST_LINE + "\nan old cell"
    setup.metadata.pop("tags", None)
    link_cell = next(c for c in nb.cells if c.cell_type == "markdown" and "](http" in c.source)
    link_cell.source += "\n\nBack to [the start](00_what_is_a_language_model.ipynb)."
    nbformat.write(nb, copy)
    before = nbformat.read(copy, as_version=4)

    assert sync_file(copy, root=root) is True
    after = nbformat.read(copy, as_version=4)
    assert sync_file(copy, root=root) is False, "a second run changes nothing"
    changed = [i for i, (a, b) in enumerate(zip(before.cells, after.cells)) if a != b]
    assert changed == sorted([before.cells.index(setup), before.cells.index(link_cell)])
    assert after.cells[before.cells.index(setup)].metadata["tags"] == [SETUP_CELL_TAG]
    assert f"[the start]({book_url()}chapters/00_what_is_a_language_model.html)" in (
        after.cells[before.cells.index(link_cell)].source
    )
    for a, b in zip(before.cells, after.cells):
        if a.cell_type == "code":
            assert (a.outputs, a.execution_count) == (b.outputs, b.execution_count)


def test_committed_notebooks_are_in_sync():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"0 of {len(notebooks())} notebooks out of sync" in result.stdout
