"""The README and the book's intro: the published book's address and the module map."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.module_map import BEGIN, END, MAP, modules, table
from teaching.course import book_url

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _rows_without_lines(text: str) -> list[list[str]]:
    rows = [line.split("|")[1:-1] for line in text.strip().splitlines() if line.startswith("| `")]
    return [[cell.strip() for i, cell in enumerate(row) if i != 1] for row in rows]


def test_readme_and_intro_link_to_the_published_book():
    url = book_url()
    assert url in README, f"README.md does not link to the published book {url}"
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    assert url in intro, f"book/intro.md does not link to the published book {url}"


def test_module_map_lists_every_module():
    missing = sorted(set(modules()) - set(MAP))
    assert missing == [], f"modules missing from the map in scripts/module_map.py: {missing}"
    gone = sorted(set(MAP) - set(modules()))
    assert gone == [], f"the map in scripts/module_map.py names modules that do not exist: {gone}"


def test_module_map_names_existing_tests_and_chapters():
    chapters = {p.name[:2] for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")}
    for name, (built_in, tests, _) in MAP.items():
        for test in tests.split(", "):
            assert (ROOT / "tests" / test).is_file(), f"{name}: {test} does not exist"
        for first, last in re.findall(r"(\d\d)(?:-(\d\d))?", built_in):
            for number in range(int(first), int(last or first) + 1):
                assert f"{number:02d}" in chapters, f"{name}: chapter {number:02d} does not exist"


def test_readme_module_map_is_up_to_date():
    assert BEGIN in README and END in README
    committed = README.split(BEGIN)[1].split(END)[0]
    # Line counts may lag behind edits; everything else must match.
    assert _rows_without_lines(committed) == _rows_without_lines(table()), (
        "README.md's module map is out of date: run python scripts/module_map.py --write"
    )


def test_reading_the_code_names_only_what_exists():
    """Every `module.py`: `name` of the README's reading path is defined in that module, and
    every chapter appears in it."""
    import ast

    section = README.split("## Reading the code", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d\d", line)]
    covered = set()
    for row in rows:
        first, last = re.match(r"\| (\d\d)(?:[-, ]+(\d\d))?", row).groups()
        covered |= set(range(int(first), int(last or first) + 1))
        for piece in row.split("; "):
            head, _, names = piece.rpartition(":")
            for module in re.findall(r"`([\w/]+\.py)`", piece):
                assert (ROOT / "tinyllm" / module).is_file(), f"README reading path: no tinyllm/{module}"
            module = re.findall(r"`([\w/]+\.py)`", head)
            if not module:
                continue
            path = ROOT / "tinyllm" / module[-1]
            assert path.is_file(), f"README reading path: {path} does not exist"
            tree = ast.parse(path.read_text(encoding="utf-8"))
            defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                        if isinstance(t, ast.Name)}
            for name, attribute in re.findall(r"`(\w+)(?:\.(\w+))?`", names):
                if attribute == "py":  # a module named in passing
                    continue
                assert name in defined, f"README reading path: {module[-1]} has no {name}"
    chapters = {int(p.name[:2]) for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")}
    assert chapters <= covered, f"chapters missing from the reading path: {sorted(chapters - covered)}"
