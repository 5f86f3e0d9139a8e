"""Time to grade one exercise notebook, with the bubblewrap sandbox and without it.
Prints figures and their ratio; never fails on time.

    python benchmarks/bench_grading.py [--set 05_attention] [--repeats 3]

Target (issue 21): the median with the sandbox <= 20 s on an idle 2-core machine. The time
covers everything ``python -m tinyllm.grade`` does for one notebook: the grader's own
process (forked from a warm one, which the first run starts: it imports torch and otter,
and is counted in the first run's time), the sandbox, running the notebook's cells, and
every call the tests make into it. With the sandbox the notebook's process is forked from
another warm process (:mod:`tinyllm.grading.warm`, also started by the first run) into
bubblewrap's sandbox; without it (``isolate=False``) it is forked from the grader's, so the
difference is the sandbox's own cost. Figures depend on the machine's load: the output says how
many cores were busy (the load average) when it ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from teaching.build import SOURCE_DIR, solutions_notebook  # noqa: E402
from tinyllm.grade import grade  # noqa: E402
from tinyllm.grading import sandbox  # noqa: E402


def median_seconds(notebook: Path, assignment: str, repeats: int, isolate=True) -> tuple[float, float]:
    """(median seconds, score) of grading ``notebook`` ``repeats`` times."""
    times, score = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        report = grade(notebook, assignment=assignment, isolate=isolate)
        times.append(time.perf_counter() - start)
        if report.error:
            raise SystemExit(f"grading failed: {report.error}")
        score = report.score
    return statistics.median(times), score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="05_attention")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    notebook = Path(tempfile.mkdtemp()) / f"{args.set}.ipynb"
    notebook.write_bytes(solutions_notebook(SOURCE_DIR / f"{args.set}.ipynb").read_bytes())
    load = os.getloadavg()[0]
    print(f"grading the solutions of {args.set}, {args.repeats} times each; "
          f"load average {load:.1f} on {os.cpu_count()} cores before the run")
    if sandbox.bwrap() is None:
        print("with the sandbox: bubblewrap cannot run here, skipped")
        with_sandbox = None
    else:
        with_sandbox, score = median_seconds(notebook, args.set, args.repeats)
        print(f"with the sandbox:    median {with_sandbox:6.1f} s (score {score:g})")
    without, score = median_seconds(notebook, args.set, args.repeats, isolate=False)
    print(f"without the sandbox: median {without:6.1f} s (score {score:g})")
    if with_sandbox is not None:
        ratio = with_sandbox / without
        print(f"the sandbox costs {with_sandbox - without:+.1f} s per notebook ({ratio:.2f}x); "
              f"target <= 20 s with it on an idle 2-core machine")
    print(f"load average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    main()
