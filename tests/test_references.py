"""Every work a chapter cites has an entry on the references page (book/references.md).

A citation is an author and a year, as the chapters write them: "Olsson et al., 2022",
"Zhang and Sennrich (2019)", "(Shazeer, 2020)", "Philip Gage's 1994", or a link to a paper
(arxiv.org and the like). An author-year citation is covered by an entry that holds both
the author's name (a whole word) and the year in parentheses; a paper link by an entry that holds the
same link.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
REFERENCES = ROOT / "book" / "references.md"

YEAR = r"(?:19|20)\d\d"
# A name (capitalised, or a pseudonym such as "nostalgebraist"), an optional "et al." or
# "and Other", then ", 2022", " (2022)" or "'s 2022". A bare "in 2022" is not a citation.
AUTHOR_YEAR = re.compile(
    rf"\b(?P<name>[A-Z][\w-]+|nostalgebraist)(?: et al\.| and [A-Z][\w-]+)?"
    rf"(?:,\s+|\s+\(|'s\s+)(?P<year>{YEAR})\b"
)
PAPER_LINK = re.compile(
    r"https?://(?:arxiv\.org|doi\.org|aclanthology\.org|openreview\.net|"
    r"transformer-circuits\.pub|proceedings\.[\w.]+)/[^\s)>\]]+"
)


def prose(path: Path) -> str:
    cells = nbformat.read(path, as_version=4).cells
    return "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")


def entries(references: str) -> list[str]:
    """The list items of the references page, each joined into one line."""
    items = re.split(r"\n(?=- )", references)
    return [" ".join(item.split()) for item in items if item.startswith("- ")]


def citations(text: str) -> list[tuple[str, str]]:
    flat = " ".join(text.split())  # a citation may break across lines
    return sorted({(m["name"], m["year"]) for m in AUTHOR_YEAR.finditer(flat)})


def missing(text: str, references: str) -> list[str]:
    found = entries(references)
    gaps = [
        f"{name} {year}"
        for name, year in citations(text)
        if not any(
            re.search(rf"\b{re.escape(name)}\b", entry) and f"({year})" in entry
            for entry in found
        )
    ]
    gaps += [link for link in PAPER_LINK.findall(text) if link not in references]
    return gaps


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_cited_work_has_a_reference_entry(path):
    gaps = missing(prose(path), REFERENCES.read_text(encoding="utf-8"))
    assert not gaps, f"{path.name} cites works that book/references.md lacks: {gaps}"


def test_citations_are_found_in_the_forms_the_chapters_use():
    text = (
        "heads (Olsson et al., 2022) and Zhang and Sennrich (2019); Muon (Keller Jordan,\n"
        "2024); Philip Gage's 1994 algorithm; the \"logit lens\" (nostalgebraist, 2020);\n"
        "in 2024 nothing; see <https://arxiv.org/abs/2002.05202>."
    )
    assert citations(text) == [
        ("Gage", "1994"), ("Jordan", "2024"), ("Olsson", "2022"),
        ("Zhang", "2019"), ("nostalgebraist", "2020"),
    ]
    references = (
        "- Catherine Olsson et al. (2022). In-context learning.\n- Philip Gage (1994).\n"
        "- Biao Zhang (2018). Another year.\n- Jordanna Smith (2024). Another name."
    )
    assert missing(text, references) == [
        "Jordan 2024", "Zhang 2019", "nostalgebraist 2020", "https://arxiv.org/abs/2002.05202",
    ]
