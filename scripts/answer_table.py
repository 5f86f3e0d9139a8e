"""What a table of the hidden tests' answers earns: the cheat the grading seed is there for.

    python scripts/answer_table.py                 # every set
    python scripts/answer_table.py 05_attention    # some

The hidden tests ship with the package, so a learner can run them at home on the
solutions, write down every input the learner's functions were called with and what they
returned, and hand in a notebook whose functions only look their inputs up in that table.
Each grading draws the tests' random inputs with a new secret seed (``checks.seed``), so
such a table answers only the tests' fixed, hand-written inputs.

For each set this script records the table (the solutions, run on the hidden tests with
one seed, in this process), builds the cheating notebook (the learner notebook, its
functions replaced by look-ups keyed on their inputs, a tokenizer's tables included; a
look-up also raises what the solution raised and changes the inputs an in-place solution
changed; what the table lacks returns None) and grades it under the sandbox twice: with the
seed the table was made with (it must score what the solutions score, or the audit
understates the cheat: the row says what it missed) and with another (what the cheat earns
from a real grading), and the blank notebook for comparison. Prints a row per set; the
figures are the audit (tests/test_grade.py checks one set).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
import torch  # noqa: E402

from teaching.build import LEARNER_DIR, sources  # noqa: E402
from teaching.solutions import packaged_tests, parameter_names, run_case, solutions_namespace  # noqa: E402
from tinyllm.grade import SEED_ENV, grade  # noqa: E402
from tinyllm.grading import GRADING_CELL_FIRST_LINE, values  # noqa: E402

RECORD_SEED, GRADE_SEED = 11, 20261204

# The key of a call, as the cheating notebook computes it too (its text is put there).
KEY_SOURCE = '''
def _table_key(args, kwargs):
    import hashlib
    import torch
    from tinyllm.grading import values

    digest = hashlib.sha256()

    def feed(v, depth=0):
        if isinstance(v, torch.Tensor):
            digest.update(f"T{v.dtype}{tuple(v.shape)}".encode())
            if v.numel():
                digest.update(v.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, (list, tuple)):
            digest.update(f"L{len(v)}".encode())
            for item in v:
                feed(item, depth)
        elif isinstance(v, dict):
            digest.update(f"D{len(v)}".encode())
            for k, item in v.items():
                feed(k, depth)
                feed(item, depth)
        elif isinstance(v, torch.nn.Module):
            feed(dict(v.state_dict()))
        elif callable(v):  # the test's own callable (in the sandbox, a stand-in that calls it back)
            digest.update(b"F")
        elif hasattr(v, "__dict__") and depth < 4:  # a tokenizer: its tables and special tokens
            digest.update(type(v).__name__.encode())  # (not its private caches, which calls fill)
            feed({k: x for k, x in sorted(vars(v).items()) if not k.startswith("_")}, depth + 1)
        else:
            digest.update(repr(values.pack(v)).encode())

    feed((list(args), dict(kwargs)))
    return digest.hexdigest()
'''
_KEY_NAMESPACE: dict = {}
exec(KEY_SOURCE, _KEY_NAMESPACE)  # the same _table_key here as in the notebook
_table_key = _KEY_NAMESPACE["_table_key"]


def record(name: str) -> tuple[dict[str, dict[str, object]], list[str]]:
    """{function: {key: packed result}} of the solutions on the hidden tests, with RECORD_SEED."""
    test_files = packaged_tests(name)
    namespace = solutions_namespace(name)
    table: dict[str, dict[str, object]] = {}
    wanted = parameter_names(test_files)
    functions = [n for n in wanted if callable(namespace.get(n))
                 and not isinstance(namespace[n], type) and n not in ("checks", "torch")]

    def recorder(fname, fn):
        def recorded(*args, **kwargs):
            key = _table_key(args, kwargs)  # the inputs as they came, before the call could change them
            before = values.pack((list(args), dict(kwargs)))
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # a test that wants an error (an unknown dtype): the table raises it too
                table.setdefault(fname, {})[key] = ("raise", (type(exc).__name__, str(exc)), None)
                raise
            after = values.pack((list(args), dict(kwargs)))  # what an in-place call changed (merges)
            changed = None if values.same(before, after) else after
            table.setdefault(fname, {})[key] = ("return", values.pack(result), changed)
            return result
        return recorded

    env = {n: namespace.get(n) for n in wanted}
    env.update({n: recorder(n, namespace[n]) for n in functions})
    for test_file in test_files.values():
        for tc in test_file.test_cases:
            failure = run_case(tc, env, RECORD_SEED)
            if failure is not None:  # a solution that fails here would make the table short
                print(f"  {name} {test_file.name}: a test failed while recording: {str(failure)[:120]}")
    return table, functions


def cheat_notebook(name: str, table: dict, functions: list[str]) -> nbformat.NotebookNode:
    buffer = io.BytesIO()
    torch.save(table, buffer)
    blob = base64.b64encode(buffer.getvalue()).decode()
    lines = [KEY_SOURCE, "import base64, io, torch", "from tinyllm.grading import values",
             f"_TABLE = torch.load(io.BytesIO(base64.b64decode({blob!r})), weights_only=False)", ""]
    for fname in functions:
        lines += [f"def {fname}(*args, **kwargs):",
                  f"    found = _TABLE.get({fname!r}, {{}}).get(_table_key(args, kwargs))",
                  "    if found is None:",
                  "        return None",
                  "    kind, result, after = found",
                  "    if kind == 'raise':",
                  "        kinds = {'ValueError': ValueError, 'TypeError': TypeError}",
                  "        raise kinds.get(result[0], RuntimeError)(result[1])",
                  "    if after is not None:  # an in-place call: change the inputs as the solution did",
                  "        for target, data in zip([*args, *kwargs.values()],",
                  "                                [*after[0], *after[1].values()]):",
                  "            values.write_back(target, data)",
                  "    return values.unpack(result)", ""]
    nb = nbformat.read(LEARNER_DIR / f"{name}.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.get("source", "").startswith(GRADING_CELL_FIRST_LINE))
    nb.cells.insert(at, nbformat.v4.new_code_cell("\n".join(lines)))
    return nb


def graded(path: Path, name: str, seed: int):
    os.environ[SEED_ENV] = str(seed)
    try:
        return grade(path, assignment=name)
    finally:
        del os.environ[SEED_ENV]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="exercise sets (default: all)")
    parser.add_argument("--no-blank", action="store_true", help="do not grade the blank notebook (faster)")
    args = parser.parse_args()
    names = args.sets or [s.stem for s in sources()]
    print(f"{'set':<22} {'calls':>5}  {'table, its seed':>15}  {'table, new seed':>15}  {'blank':>7}  "
          "hidden points earned")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            table, functions = record(name)
            path = Path(folder) / f"{name}.ipynb"
            nbformat.write(cheat_notebook(name, table, functions), path)
            own, new = graded(path, name, RECORD_SEED), graded(path, name, GRADE_SEED)
            blank = "-"
            if not args.no_blank:
                blank = f"{graded(LEARNER_DIR / f'{name}.ipynb', name, GRADE_SEED).score:g}"
            hidden = sum(c["points"] for q in new.questions for c in q.cases if c["hidden"] and c["passed"])
            hidden_all = sum(c["points"] for q in new.questions for c in q.cases if c["hidden"])
            calls = sum(len(t) for t in table.values())
            print(f"{name:<22} {calls:>5}  {own.score:>6g} / {own.possible:<6g}  "
                  f"{new.score:>6g} / {new.possible:<6g}  {blank:>7}  {hidden:g} of {hidden_all:g}"
                  + (f"  ({new.error})" if new.error else ""), flush=True)
            for q in own.questions:  # the table misses what it should answer: the audit understates
                missed = [c["name"] for c in q.cases if not c["passed"]]
                if missed:
                    print(f"    {q.name} at its own seed, missed {', '.join(missed)}: {q.message[:150]}")
            for q in new.questions:
                earned = [c["name"] for c in q.cases if c["hidden"] and c["passed"]]
                if earned:
                    print(f"    {q.name}: {', '.join(earned)}")


if __name__ == "__main__":
    main()
