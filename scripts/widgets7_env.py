"""Make a small environment whose ipywidgets is Colab's 7.7.1, for the widget tests.

    python scripts/widgets7_env.py [FOLDER]     # default: .venv/widgets7; prints its python

Colab ships ipywidgets 7.7.1 (and cannot show version 8 widgets), the course's own
environment has version 8: the widgets must work with both. This environment holds only
the widget library at Colab's versions; everything else (torch, pytest, the tinyllm
package itself) comes from the environment that runs this script, through a ``.pth`` file
that puts its folders *after* the new ones on ``sys.path``. Building it installs three
small wheels (a few seconds); a stamp file skips the work when nothing changed.
"""

from __future__ import annotations

import argparse
import json
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / ".venv" / "widgets7"
# Colab's versions (tests/data/colab-pip-freeze.txt). widgetsnbextension and
# ipython-genutils are what ipywidgets 7 needs besides what the main environment has.
# traitlets stays the main environment's: Colab's 5.7.1 goes with its IPython 7, and the
# main environment's IPython needs a newer one.
PINS = ["ipywidgets==7.7.1", "widgetsnbextension==3.6.10", "ipython-genutils==0.2.0"]


def site_packages(folder: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return folder / relative


def build(folder: Path = DEFAULT) -> Path:
    """Create (or reuse) the environment in ``folder``; return its python."""
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    wanted = {"pins": PINS, "base": sys.prefix, "python": sys.version}
    if stamp.is_file() and python.exists() and json.loads(stamp.read_text()) == wanted:
        return python
    # --without-pip: the main environment's pip installs into it (faster than ensurepip).
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(folder)], check=True)
    target = site_packages(folder)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), *PINS],
        check=True,
    )
    # After the new site-packages: the main environment's packages, then the repository.
    lines = [*site.getsitepackages(), str(ROOT)]
    (target / "zz_main_environment.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    args = parser.parse_args(argv)
    print(build(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
