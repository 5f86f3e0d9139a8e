"""Course plumbing shared by the notebooks and their tests (not part of the model flow)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETUP_CELL_FIRST_LINE = "# Colab setup: installs tinyllm in Google Colab, does nothing elsewhere."


def repository_url(config_path: Path | str = ROOT / "_config.yml") -> str:
    """The repository url, written once in the book's ``_config.yml``."""
    text = Path(config_path).read_text(encoding="utf-8")
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"{config_path} has no repository url")
    return match.group(1)


def colab_setup_source(url: str | None = None) -> str:
    """The one setup cell at the top of every chapter and exercise notebook."""
    url = url or repository_url()
    return (
        f"{SETUP_CELL_FIRST_LINE}\n"
        "import subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    repository = \"{url}\"\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
        "                    f\"tinyllm[exercises] @ git+{repository}\"], check=True)"
    )
