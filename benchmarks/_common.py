"""What every benchmark that writes a measurement file shares: its command-line options.

Benchmarks run as scripts (``python benchmarks/bench_x.py``), so this folder is first on
``sys.path`` and ``from _common import measurement_options`` finds this file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def measurement_options(parser: argparse.ArgumentParser, out: Path) -> None:
    """``--threads`` (torch threads), ``--out`` (the JSON written) and ``--note`` (a remark
    kept in its metadata: the machine's state, say)."""
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--note", default="", help="a remark stored in the file's metadata")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
