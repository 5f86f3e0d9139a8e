"""The message helpers of tinyllm.grading.checks: counts, input descriptions, failing calls."""

import pytest
import torch

from tinyllm.grading import checks


def test_plural_agrees_with_the_count():
    assert checks.plural(1, "key") == "1 key"
    assert checks.plural(2, "key") == "2 keys"
    assert checks.plural(0, "logit") == "0 logits"
    assert checks.plural(3, "child", "children") == "3 children"


def test_describe_names_shapes_lengths_and_numbers():
    assert checks.describe(torch.zeros(2, 2, 6, 16)) == "a tensor of shape (2, 2, 6, 16)"
    assert checks.describe([torch.zeros(3), torch.zeros(2, 2)]) == "a list of 2 tensors of shape (3,), (2, 2)"
    assert checks.describe([1]) == "a list of 1 item"
    assert checks.describe(0.5) == "0.5"
    assert checks.describe(torch.nn.Linear(2, 2)) == "a Linear"
    assert checks.describe(lambda x: x) == "a function"


def test_call_with_shapes_says_which_inputs_made_the_function_raise():
    def attention(q, k):
        return q @ k.transpose(1, 2)  # wrong for 4-D inputs

    q = torch.zeros(2, 2, 6, 16)
    with pytest.raises(AssertionError) as info:
        checks.call_with_shapes("attention", attention, q, q)
    message = str(info.value)
    assert message.startswith("`attention` raised RuntimeError")
    assert message.endswith("(called with a tensor of shape (2, 2, 6, 16), a tensor of shape (2, 2, 6, 16))")


def test_call_with_shapes_returns_the_result_and_keeps_other_failures():
    assert checks.call_with_shapes("double", lambda x: 2 * x, 3) == 6
    with pytest.raises(AssertionError, match=r"^`missing` is not defined"):
        checks.call_with_shapes("missing", None, 1)


LAYER_NORM = ("torch.nn.functional.layer_norm", "torch.layer_norm")
LOG_SOFTMAX = ("torch.nn.functional.log_softmax", "torch.Tensor.log_softmax")


@pytest.mark.parametrize("answer", [
    lambda x: torch.nn.functional.layer_norm(x, (4,)),
    lambda x: torch.layer_norm(x, (4,)),
    lambda x: torch.nn.LayerNorm(4)(x),
    lambda x: torch.ops.aten.layer_norm(x, [4]),
    lambda x: torch.ops.aten.native_layer_norm.default(x, [4], None, None, 1e-5)[0],
    lambda x: torch._C._VariableFunctions.layer_norm(x, (4,)),
], ids=["function", "C function", "module", "aten op", "aten overload", "private alias"])
def test_call_without_fails_an_answer_that_reaches_a_forbidden_function_by_any_path(answer):
    forbidden = LAYER_NORM + ("torch.native_layer_norm",)
    with pytest.raises(AssertionError) as info:
        checks.call_without(forbidden, "layer_norm", answer, torch.randn(2, 4))
    # named by what the test lists first for that name; torch's own calls inside it are not named
    named = "torch.native_layer_norm" if "native" in str(info.value) else "torch.nn.functional.layer_norm"
    assert str(info.value) == (f"`layer_norm` calls {named}, which the exercise asks you not to use: "
                               "write that part yourself")
    assert torch.overrides._get_current_function_mode_stack() == []  # the watch is gone after the call


def test_call_without_sees_a_tensor_method_and_lets_other_work_through():
    x = torch.randn(3, 5)
    for answer in (lambda x: x.log_softmax(-1), lambda x: torch.ops.aten._log_softmax(x, -1, False),
                   lambda x: torch.special.log_softmax(x, -1)):
        with pytest.raises(AssertionError, match=r"calls torch\.(nn\.functional|special)\.log_softmax,"):
            checks.call_without(LOG_SOFTMAX + ("torch.special.log_softmax",), "f", answer, x)
    own = checks.call_without(LOG_SOFTMAX, "f", lambda x: x - torch.logsumexp(x, -1, keepdim=True), x)
    torch.testing.assert_close(own, x.log_softmax(-1))
    assert checks.call_without(LOG_SOFTMAX, "f", lambda x: x.softmax(-1), x).shape == (3, 5)  # not forbidden
    # torch's own use of a forbidden function inside one the answer may call does not count
    gumbel = torch.nn.functional.gumbel_softmax  # its softmax is torch's own call
    assert checks.call_without(("torch.Tensor.softmax",), "f", gumbel, x).shape == (3, 5)


class _Passing(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_call_without_fails_an_answer_that_takes_the_watch_off():
    def hidden(x):
        torch.overrides._pop_mode()  # the grader's watch, taken off the stack
        return torch.layer_norm(x, (4,))

    with pytest.raises(AssertionError, match=r"`layer_norm` changed torch's function modes"):
        checks.call_without(LAYER_NORM, "layer_norm", hidden, torch.randn(2, 4))
    # a mode of its own left on top
    with pytest.raises(AssertionError, match=r"changed torch's function modes"):
        checks.call_without(LAYER_NORM, "layer_norm", lambda x: _Passing().__enter__() and x,
                            torch.randn(2, 4))
    assert torch.overrides._get_current_function_mode_stack() == []


def test_a_class_is_not_a_forbidden_name():
    with pytest.raises(TypeError, match="the function its forward calls"):
        checks.forbidden_keys(("torch.nn.LayerNorm",))


def test_a_name_ending_in_a_star_forbids_a_family_of_kernels():
    """Set 05's list: the attention kernels behind F.scaled_dot_product_attention under their
    own names, and nn.MultiheadAttention, whose forward calls F.multi_head_attention_forward."""
    sdpa = ("torch.nn.functional.scaled_dot_product_attention", "torch.ops.aten._scaled_dot_product_*",
            "torch.nn.functional.multi_head_attention_forward")
    q = torch.randn(1, 2, 3, 4)
    aten = torch.ops.aten
    for answer in (lambda q: aten._scaled_dot_product_attention_math(q, q, q, is_causal=True)[0],
                   lambda q: aten._scaled_dot_product_flash_attention_for_cpu(q, q, q, is_causal=True)[0]):
        with pytest.raises(AssertionError, match=r"calls torch\.ops\.aten\._scaled_dot_product_\*,"):
            checks.call_without(sdpa, "attention", answer, q)
    mha = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(1, 3, 4)
    with pytest.raises(AssertionError, match=r"calls torch\.nn\.functional\.multi_head_attention_forward,"):
        checks.call_without(sdpa, "attention", lambda x: mha(x, x, x, need_weights=False)[0], x)
    own = checks.call_without(sdpa, "attention", lambda q: (q @ q.transpose(-2, -1)).softmax(-1) @ q, q)
    assert own.shape == q.shape  # what the answer writes itself passes


@pytest.mark.parametrize("answer", [
    lambda ids, x: ids,
    lambda ids, x: (list(ids), x),
    lambda ids, x: x[:, 1:],
    lambda ids, x: x.t(),
    lambda ids, x: [[x.view(-1)]],
    lambda ids, x: {"out": ids},
], ids=["the list", "the tensor itself", "a slice", "a transpose", "a nested view", "in a dict"])
def test_call_new_fails_a_result_that_is_or_views_what_was_given(answer):
    with pytest.raises(AssertionError, match=r"^`f` returned what it was given .* asks for a new one"):
        checks.call_new("f", answer, [1, 2], torch.ones(2, 3))


@pytest.mark.parametrize("answer", [
    lambda x: [x * 2] * 3,
    lambda x: (lambda y: (y, y[0]))(x * 2),
    lambda x: (x + 1).expand(2, 2, 3).unbind(0),
], ids=["one tensor three times", "a tensor and a view of it", "two views of one new tensor"])
def test_call_new_fails_a_result_whose_tensors_share_memory(answer):
    with pytest.raises(AssertionError, match=r"^`f` returned tensors that share memory .* asks for new ones"):
        checks.call_new("f", answer, torch.ones(2, 3))


def test_call_new_passes_new_results_that_hold_the_callers_items():
    messages = [{"role": "user", "content": "hi"}]
    assert checks.call_new("trim", lambda m: m[:], messages) == messages  # a new list of the same dicts
    x = torch.ones(2, 3)
    assert checks.call_new("f", lambda x, empty: (x.clone(), x * 1, empty[:0]), x, torch.ones(0)) is not None
    assert checks.call_new("f", lambda n: n, 3) == 3  # numbers and strings are values, not shared


def test_a_call_that_changes_its_inputs_names_what_to_build_anew():
    with pytest.raises(AssertionError, match=r"changed the inputs it was given: .* into new tensors$"):
        checks.call("f", lambda x, ids: x.mul_(2), torch.ones(2), [1])
    with pytest.raises(AssertionError, match=r"changed the inputs it was given: .* in new lists or dicts"):
        checks.call("f", lambda x, ids: ids.append(3), torch.ones(2), [1])


def test_call_grad_returns_the_inputs_gradients_and_none_where_the_path_is_cut():
    x, layer = torch.randn(2, 3).requires_grad_(), torch.nn.Linear(3, 2)
    weights = torch.randn(2, 2)
    out, grads = checks.call_grad(weights, "f", lambda x, n, m: m(x) * n, x, 2, layer)
    x_grad, w_grad = torch.autograd.grad(((layer(x) * 2) * weights).sum(), [x, layer.weight])
    assert len(grads) == 2 and out.shape == (2, 2)  # the number 2 is not a tensor: left out
    torch.testing.assert_close(grads[0], x_grad)
    torch.testing.assert_close(grads[1]["weight"], w_grad)
    _, grads = checks.call_grad(None, "f", lambda x, n, m: m(x.detach()), x, 2, layer)
    assert grads[0] is None and grads[1]["bias"] is not None  # no gradient reaches x
    with pytest.raises(AssertionError, match=r"^`f`'s result could not be differentiated: RuntimeError"):
        checks.call_grad(None, "f", lambda x: (lambda y: (y, y.mul_(2))[0])(x.exp()), x)


def test_a_wrong_type_is_named_with_its_article():
    with pytest.raises(AssertionError, match=r"^`f` should return an int, but returned a float$"):
        checks.returned("f", 1.0, int)
    with pytest.raises(AssertionError, match=r"^`f` should return a list, but returned an int$"):
        checks.returned("f", 3, list)
    with pytest.raises(AssertionError, match=r"^`f` should be a function, but it is an int$"):
        checks.call("f", 3)


def test_every_function_the_grading_page_says_must_return_new_objects_is_tested_so():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = " ".join((root / "book" / "grading.md").read_text(encoding="utf-8").split())
    listed = re.search(r"Where a statement asks for a new list or new tensors \(([^)]*)\)", page)
    names = re.findall(r"`(\w+)`", listed[1])
    assert len(names) == 6
    tests = "".join(p.read_text(encoding="utf-8") for p in (root / "tinyllm/grading/assignments").glob("*.json"))
    for name in names:
        called = re.search(rf"checks\.call_new\(\\?['\"]{name}\\?['\"]", tests)
        assert called, f"no packaged test calls {name} with checks.call_new"


def test_the_watchs_audit_hook_finds_no_caller_without_raising():
    """An exception in an audit hook would stop the operation that raised the event."""
    import subprocess
    import sys

    code = "from tinyllm.grading.watch import _caller_code; print(_caller_code())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"
