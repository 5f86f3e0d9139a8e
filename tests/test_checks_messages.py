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


LAYER_NORM = ("torch.nn.functional.layer_norm", "torch.layer_norm", "torch.nn.LayerNorm")
LOG_SOFTMAX = ("torch.nn.functional.log_softmax", "torch.Tensor.log_softmax")


@pytest.mark.parametrize("answer, named", [
    (lambda x: torch.nn.functional.layer_norm(x, (4,)), "torch.nn.functional.layer_norm"),
    (lambda x: torch.layer_norm(x, (4,)), "torch.layer_norm"),
    (lambda x: torch.nn.LayerNorm(4)(x), "torch.nn.LayerNorm"),
], ids=["function", "C function", "class"])
def test_call_without_fails_an_answer_that_calls_a_forbidden_function(answer, named):
    with pytest.raises(AssertionError) as info:
        checks.call_without(LAYER_NORM, "layer_norm", answer, torch.randn(2, 4))
    # torch's own calls inside the forbidden one are not named
    assert str(info.value).startswith(f"`layer_norm` calls {named}")
    assert "which the exercise asks you not to use" in str(info.value)


def test_call_without_sees_a_tensor_method_and_lets_other_work_through():
    x = torch.randn(3, 5)
    with pytest.raises(AssertionError, match=r"calls torch.Tensor.log_softmax"):
        checks.call_without(LOG_SOFTMAX, "f", lambda x: x.log_softmax(-1), x)
    own = checks.call_without(LOG_SOFTMAX, "f", lambda x: x - torch.logsumexp(x, -1, keepdim=True), x)
    torch.testing.assert_close(own, x.log_softmax(-1))
    assert checks.call_without(LOG_SOFTMAX, "f", lambda x: x.softmax(-1), x).shape == (3, 5)  # not forbidden
