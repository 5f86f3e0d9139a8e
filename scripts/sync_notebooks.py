"""Bring every notebook's Colab setup cell and links in line with _config.yml.

    python scripts/sync_notebooks.py            # rewrite the notebooks that need it
    python scripts/sync_notebooks.py --check    # only list them; exit 1 if any

For each chapter, exercise source, learner notebook and wrong-on-purpose submission:

- the first code cell becomes the generated setup cell (chapters install the package,
  exercise sets the grading extra), tagged so the book leaves it out;
- relative links between pages (``01_text_to_numbers.ipynb``, ``../book/grading.md``)
  become absolute links to the published book, which also work in a notebook opened alone
  in Colab.

Nothing else is touched: outputs, execution counts and other cells stay as they are, and a
second run changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from teaching.course import absolute_links, apply_setup_cell, setup_kind  # noqa: E402

PATTERNS = (
    "chapters/[0-9][0-9]_*.ipynb",
    "exercises/[0-9][0-9]_*.ipynb",
    "exercises/source/[0-9][0-9]_*.ipynb",
    "exercises/wrong/*/*.ipynb",
)


def notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook the script keeps in sync, in a stable order."""
    return sorted(p for pattern in PATTERNS for p in root.glob(pattern))


def link_page(page: str) -> str:
    """The page whose folder a notebook's relative links start from.

    Exercise sources and wrong submissions carry the learner notebook's text, written for
    ``exercises/NN_name.ipynb``, so their links start from ``exercises/``.
    """
    parts = page.split("/")
    if parts[0] == "exercises" and len(parts) > 2:
        return f"exercises/{parts[-1]}"
    return page


def sync(nb, page: str) -> bool:
    """Rewrite ``nb`` (the notebook at ``page``, relative to the root) in place; return
    whether anything changed."""
    changed = apply_setup_cell(nb, setup_kind(page))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            fixed = absolute_links(cell.source, link_page(page))
            if fixed != cell.source:
                cell.source, changed = fixed, True
    return changed


def sync_file(path: Path, root: Path = ROOT, write: bool = True) -> bool:
    nb = nbformat.read(path, as_version=4)
    try:
        changed = sync(nb, path.relative_to(root).as_posix())
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from exc
    if changed and write:
        # nbformat writes the same layout the run and build scripts write, so only the
        # changed cells differ in git.
        nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook is out of sync"
    )
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all the course's)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.paths] or notebooks()
    changed = [p for p in paths if sync_file(p, write=not args.check)]
    verb = "out of sync" if args.check else "updated"
    for path in changed:
        print(f"{verb}: {path.relative_to(ROOT)}")
    print(f"{len(changed)} of {len(paths)} notebooks {verb}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
