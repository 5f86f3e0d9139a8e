"""The short public API a newcomer starts from: ``from tinyllm import GPT, ...``."""

from __future__ import annotations

import subprocess
import sys

import tinyllm


def test_every_public_name_imports_and_is_the_modules_own():
    import importlib

    for name, module in tinyllm._PUBLIC.items():
        assert getattr(tinyllm, name) is getattr(importlib.import_module(module), name), name
    assert set(tinyllm.__all__) == set(tinyllm._PUBLIC)


def test_the_readme_example_runs():
    from tinyllm import GPT, BPETokenizer, GPTConfig

    tok = BPETokenizer()
    tok.train("to be or not to be, that is the question " * 20, vocab_size=280)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    logits, loss = model(__import__("torch").tensor([tok.encode("to be")]))
    assert logits.shape[-1] == tok.vocab_size and loss is None


def test_an_unknown_name_is_an_attribute_error_and_import_stays_light():
    try:
        tinyllm.NotAThing  # noqa: B018
    except AttributeError as exc:
        assert "NotAThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    # Importing the package alone loads neither torch nor the model: the names load on use.
    code = "import sys, tinyllm; print('torch' in sys.modules, 'tinyllm.model' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _module_level_imports(package_dir) -> dict[str, set[str]]:
    """For each module of the package, the package modules it imports at module level."""
    import ast

    root = package_dir.parent
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package_dir.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                found |= submodules or {node.module}  # from a package import a submodule: the submodule
        # A submodule's own parent packages are imported before it in any case: not a cycle.
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return []


def test_no_import_cycle_in_the_package():
    from pathlib import Path

    graph = _module_level_imports(Path(tinyllm.__file__).resolve().parent)
    assert len(graph) > 30 and graph["tinyllm.grading.judge"] >= {"tinyllm.grading.values"}
    assert _cycle(graph) == [], " -> ".join(_cycle(graph))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds one


# Modules that are data, not code a reader follows: the chat's tables.
DATA_MODULES = {"chat_topics.py"}
MAX_MODULE_LINES = 450


def test_no_module_is_longer_than_a_reader_can_hold():
    """One idea per module: none of the package's code modules is over 450 lines."""
    from pathlib import Path

    package = Path(tinyllm.__file__).resolve().parent
    sizes = {p.relative_to(package).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in package.rglob("*.py")}
    assert DATA_MODULES <= set(sizes), sorted(DATA_MODULES - set(sizes))
    long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES and name not in DATA_MODULES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines (split them by idea): {long}"
