"""Do the hidden tests catch a solution with one small mistake? Mutation testing, in-process.

    python scripts/mutate_solutions.py                      # every set
    python scripts/mutate_solutions.py 13_scaling_out --salts 3

Each function a set's tests take from the notebook is taken from the set's solutions
(:mod:`teaching.solutions`) and changed in one place at a time: an operator (``+`` for
``-``), a comparison (``<`` for ``<=``), a constant (``n`` for ``n + 1``), a ``dim``, a
reduction (``mean`` for ``sum``), a slice bound, a dropped statement, a view in place of
``.clone()``, ``is`` for ``is not``. Every mutant runs against its question's packaged tests
with a few grading salts, as the grader runs them; one that passes them all *survives*.
A survivor is either equivalent (``>`` for ``>=`` where both branches give the same value)
or a mistake the tests miss: read each one. Docstrings and default values are not mutated
(a statement that names a default has its own test). Prints each question's count and
every survivor's changed line; exits 1 if any survived. Found, once: ``all_reduce_mean``
returning one tensor N times, and an untested default ``reserve=0``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.audit_references import salt  # noqa: E402
from teaching.build import sources  # noqa: E402
from teaching.solutions import packaged_tests, run_case, solutions_namespace  # noqa: E402

OPERATORS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
             ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv}
COMPARISONS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
               ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
METHODS = {"mean": "sum", "sum": "mean", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
           "sqrt": "rsqrt", "rsqrt": "sqrt", "exp": "log", "log": "exp", "floor": "ceil", "ceil": "floor",
           "round": "floor", "triu": "tril", "tril": "triu", "argmax": "argmin", "cumsum": "cumprod",
           "var": "std", "std": "var", "float": "double"}
DIMENSIONS = ("dim", "keepdim", "descending", "largest", "diagonal")
SECONDS = 20  # one mutant against its question's tests: an endless loop is a caught mutant


def mutants(function: ast.FunctionDef) -> Iterator[tuple[str, ast.FunctionDef]]:
    """(what changed, the changed function) for each single change of ``function``'s body."""
    nodes = [n for statement in function.body for n in ast.walk(statement)]
    for index, node in enumerate(nodes):
        line = f"line {getattr(node, 'lineno', '?')}"

        def changed(change: Callable[[ast.AST, ast.FunctionDef], None], what: str, index=index, line=line):
            mutant = copy.deepcopy(function)
            target = [n for statement in mutant.body for n in ast.walk(statement)][index]
            change(target, mutant)
            return f"{what} ({line})", mutant

        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            swap = OPERATORS[type(node.op)]
            yield changed(lambda n, _, swap=swap: setattr(n, "op", swap()),
                          f"{type(node.op).__name__} -> {swap.__name__}")
        if isinstance(node, ast.Compare) and type(node.ops[0]) in COMPARISONS:
            swap = COMPARISONS[type(node.ops[0])]
            yield changed(lambda n, _, swap=swap: n.ops.__setitem__(0, swap()),
                          f"{type(node.ops[0]).__name__} -> {swap.__name__}")
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            for step in (1, -1) if type(node.value) is int else (2,):
                new = node.value + step if type(node.value) is int else node.value * step or 1.0
                yield changed(lambda n, _, new=new: setattr(n, "value", new), f"{node.value!r} -> {new!r}")
        if isinstance(node, ast.Constant) and type(node.value) is bool:
            yield changed(lambda n, _: setattr(n, "value", not n.value), f"{node.value} -> {not node.value}")
        if isinstance(node, ast.keyword) and node.arg in DIMENSIONS:
            yield changed(lambda n, _: setattr(n, "value", ast.Constant(0)), f"{node.arg} -> 0")
        if isinstance(node, ast.Attribute) and node.attr in METHODS:
            yield changed(lambda n, _: setattr(n, "attr", METHODS[n.attr]), f".{node.attr} -> .{METHODS[node.attr]}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "clone" \
                and not node.args:
            yield changed(_view_instead, ".clone() -> a view")
        if isinstance(node, ast.Slice):
            for bound in ("lower", "upper"):
                if getattr(node, bound) is not None:
                    yield changed(lambda n, _, b=bound: setattr(n, b, None), f"slice {bound} dropped")
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            yield changed(lambda n, _: setattr(n, "test", ast.Constant(False)), "condition -> False")
        if isinstance(node, ast.stmt) and not isinstance(node, (ast.Return, ast.FunctionDef)) \
                and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            yield changed(_drop, f"{type(node).__name__} statement dropped")


def _view_instead(call: ast.Call, _) -> None:
    call.args = [copy.deepcopy(call.func.value)]
    call.func.attr = "view_as"


def _drop(statement: ast.stmt, function: ast.FunctionDef) -> None:
    for parent in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(parent, field, None)
            if isinstance(body, list) and any(s is statement for s in body):
                body[[i for i, s in enumerate(body) if s is statement][0]] = ast.Pass()
                return


def survives(function: ast.FunctionDef, namespace: dict, cases: list, salts: list[int]) -> bool:
    """Whether ``function`` (a mutant) passes every test case with every salt."""
    scope = dict(namespace)
    try:
        exec(compile(ast.Module([function], []), f"<mutant of {function.name}>", "exec"), scope)
    except Exception:
        return False  # not even defined: caught

    def too_long(signum, frame):
        raise TimeoutError(f"a mutant ran longer than {SECONDS} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(SECONDS)
    try:
        return all(run_case(case, scope, s) is None for s in salts for case in cases)
    except TimeoutError:
        return False
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mutate(name: str, salts: int, only: str | None = None) -> list[tuple[str, str, str, str]]:
    """(question, function, what changed, the changed line) of every surviving mutant."""
    tests, namespace = packaged_tests(name), solutions_namespace(name)
    drawn = [salt(i) for i in range(salts)]
    survivors = []
    for question, test_file in tests.items():
        if only and question != only:
            continue
        wanted = sorted({p for case in test_file.test_cases for p in inspect.signature(case.body.test_func).parameters})
        for function_name in wanted:
            function = namespace.get(function_name)
            if not inspect.isfunction(function):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
            count = kept = 0
            for what, mutant in mutants(tree):
                count += 1
                if survives(mutant, namespace, test_file.test_cases, drawn):
                    kept += 1
                    changed = [m for o, m in zip(ast.unparse(tree).splitlines(), ast.unparse(mutant).splitlines())
                               if o != m]
                    survivors.append((question, function_name, what, changed[0].strip() if changed else ""))
            print(f"{name} {question} {function_name}: {count} mutants, {kept} survive", flush=True)
    return survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="exercise sets (default: all)")
    parser.add_argument("--salts", type=int, default=2, help="grading salts per mutant (default 2)")
    parser.add_argument("--question", help="only this question (q1, q2, ...)")
    args = parser.parse_args(argv)
    names = args.sets or [s.stem for s in sources()]
    survivors = []
    for name in names:
        survivors += [(name, *s) for s in mutate(name, args.salts, args.question)]
    for name, question, function, what, line in survivors:
        print(f"survives: {name} {question} {function}: {what}: {line}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
