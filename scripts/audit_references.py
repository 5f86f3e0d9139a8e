"""Do the course's own solutions pass every hidden test on every draw? Many grading salts, in-process.

    python scripts/audit_references.py                        # every set, 200 salts each
    python scripts/audit_references.py 05_attention --salts 1000

Each grading draws the hidden tests' random inputs with a new secret salt (``checks.seed``),
so a test must hold for every draw. The suite grades the solutions with one salt per run,
which cannot see a reference that fails one grading in 50 (set 05's did: a float32
expectation, a tolerance too tight for inputs 40 times larger) or one in 300 (set 09's).
Here each set's solutions run once in this process (:mod:`teaching.solutions`) and every
test case of the packaged tests runs against them with salts 0, 1, 2, ... (the salt of a
grading, from ``random.Random(i)``), as the grader runs it. Prints a line per set and, per
failing test, how often it failed, the first salt (``TINYLLM_GRADING_SEED=<salt>`` grades
with those draws) and its message; exits 1 if anything failed. From 0.01 s (set 13) to 0.4 s
(set 14) of CPU per salt: run it with 1,000 salts after changing a hidden test (CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from teaching.build import sources  # noqa: E402
from teaching.solutions import packaged_tests, run_case, solutions_namespace  # noqa: E402


def salt(i: int) -> int:
    """The ``i``-th audited salt: 62 bits, as :func:`tinyllm.grade.grading_seed` draws them."""
    return random.Random(i).getrandbits(62)


def audit(name: str, salts: int, namespace: dict | None = None) -> dict[str, list]:
    """{"qN test_name": [failures, first failing salt, its message]} of the set's packaged tests
    against ``namespace`` (default: the set's solutions) over ``salts`` grading salts."""
    test_files = packaged_tests(name)
    namespace = solutions_namespace(name) if namespace is None else namespace
    failures: dict[str, list] = {}
    for i in range(salts):
        drawn = salt(i)
        for question, test_file in test_files.items():
            for case in test_file.test_cases:
                failure = run_case(case, namespace, drawn)
                if failure is not None:
                    test = f"{question} {case.body.test_func.__name__}"
                    failures.setdefault(test, [0, drawn, " ".join(str(failure).split())])[0] += 1
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="exercise sets (default: all)")
    parser.add_argument("--salts", type=int, default=200, help="grading salts per set (default 200)")
    args = parser.parse_args(argv)
    if args.salts < 1:
        parser.error("--salts must be at least 1")
    known = [s.stem for s in sources()]
    unknown = [n for n in args.sets if n not in known]
    if unknown:
        parser.error(f"no exercise set named {', '.join(unknown)} (known: {', '.join(known)})")
    failed = False
    for name in args.sets or known:
        start = time.process_time()
        failures = audit(name, args.salts)
        failed = failed or bool(failures)
        print(f"{name}: {args.salts} salts, {time.process_time() - start:.0f} s of CPU, "
              f"{sum(f[0] for f in failures.values())} failed test runs", flush=True)
        for test, (count, first, message) in sorted(failures.items()):
            print(f"  {test}: failed {count} of {args.salts} "
                  f"(first with TINYLLM_GRADING_SEED={first}): {message[:200]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
