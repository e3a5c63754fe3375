import pytest
import torch

from alignez_core.engine import rules
from alignez_core.engine.rules import get_rule, register_rule, rule_names

X = torch.tensor([[3.0, 4.0, 0.0]])  # ‖x‖ = 5
E0 = torch.tensor([[1.0, 0.0, 0.0]])
E1 = torch.tensor([[0.0, 1.0, 0.0]])


def test_add_adds_scaled_directions():
    out = get_rule("add")(X, torch.cat([E0, E1]), 2.0)
    assert torch.allclose(out, torch.tensor([[5.0, 6.0, 0.0]]))


def test_paper_rule_amplifies_and_removes_the_projection():
    amplify = get_rule("project")(X, E0, 1.0)
    assert torch.allclose(amplify, torch.tensor([[6.0, 4.0, 0.0]]))
    removed = get_rule("project")(X, E0, -1.0)
    assert torch.allclose(removed, torch.tensor([[0.0, 4.0, 0.0]]))


def test_paper_rule_is_symmetric_in_the_sign_of_theta():
    assert torch.allclose(get_rule("project")(X, E0, 0.7), get_rule("project")(X, -E0, 0.7))


def test_tanh_rule_is_scaled_by_the_norm():
    out = get_rule("tanh")(X, E0, 1.0)
    expected = 3.0 + 5.0 * torch.tanh(torch.tensor(3.0 / 5.0))
    assert torch.allclose(out[0, 0], expected)
    assert torch.allclose(out[0, 1:], X[0, 1:])


def test_steer_rule_is_signed_and_relative_to_the_norm():
    up = get_rule("scaled_add")(X, E1, 0.5)
    down = get_rule("scaled_add")(X, E1, -0.5)
    assert torch.allclose(up, torch.tensor([[3.0, 6.5, 0.0]]))
    assert torch.allclose(down, torch.tensor([[3.0, 1.5, 0.0]]))


def test_rules_do_not_modify_their_inputs():
    x = X.clone()
    for name in rule_names():
        get_rule(name)(x, E0, 1.0)
    assert torch.equal(x, X)


def test_unknown_rule_names_the_known_ones():
    with pytest.raises(KeyError, match="Unknown edit rule 'nope'.*project"):
        get_rule("nope")


def test_register_rule_adds_a_pluggable_operator(monkeypatch):
    monkeypatch.setattr(rules, "_RULES", dict(rules._RULES))

    @register_rule("test_double")
    def double(hidden, directions, strength):
        return hidden * 2

    assert torch.equal(get_rule("test_double")(X, E0, 0.0), X * 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["add", "project", "tanh", "scaled_add"])
def test_in_place_kernel_computes_what_the_pure_rule_defines(name, dtype):
    torch.manual_seed(0)
    hidden = torch.randn(4, 16).to(dtype)
    directions = torch.linalg.qr(torch.randn(16, 3))[0].T.contiguous()  # (3, 16) orthonormal
    expected = get_rule(name)(hidden.float(), directions, 0.7).to(dtype)
    view = hidden.clone()
    rules.edit_kernel(name, directions, 0.7)(view)
    assert view.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(view.float(), expected.float(), rtol=tolerance, atol=tolerance)
    assert not torch.allclose(view.float(), hidden.float())  # it did edit


def test_a_rule_without_kernel_runs_through_the_pure_function(monkeypatch):
    monkeypatch.setattr(rules, "_RULES", dict(rules._RULES))
    register_rule("scaled_add")(lambda hidden, directions, strength: hidden * 0 + 42)  # overrides
    view = X.clone()
    rules.edit_kernel("scaled_add", E0, 1.0)(view)
    assert torch.equal(view, torch.full_like(X, 42.0))


def test_register_kernel_gives_a_rule_its_in_place_form(monkeypatch):
    monkeypatch.setattr(rules, "_RULES", dict(rules._RULES))
    monkeypatch.setattr(rules, "_KERNELS", dict(rules._KERNELS))

    @register_rule("test_shift")
    def shift(hidden, directions, strength):
        return hidden + strength

    calls = []

    @rules.register_kernel(shift)
    def shift_kernel(directions, strength):
        return lambda view: calls.append(1) or view.add_(strength)

    view = X.clone()
    rules.edit_kernel("test_shift", E0, 2.0)(view)
    assert torch.equal(view, X + 2.0)
    assert calls == [1]  # the kernel ran, not the pure function
