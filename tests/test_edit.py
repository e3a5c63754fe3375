import math

import pytest
import torch

from alignez_core import EditError, SamplingConfig
from alignez_core.engine import Edit, LayerEdit, generate_grid


def edit_with(layer=1, directions=None, strength=1.0, rule="add", hidden=64):
    directions = torch.ones(1, hidden) if directions is None else directions
    return Edit((LayerEdit(layer, directions, strength, rule),))


@pytest.mark.parametrize("strength", [math.nan, math.inf, -math.inf, "lots"])
def test_non_finite_strength_is_rejected_with_a_message(tiny_llama, strength):
    with pytest.raises(EditError, match="strength must be"):
        generate_grid(tiny_llama, ["hi"], [edit_with(strength=strength)])


def test_direction_of_wrong_hidden_size_is_rejected_before_generation(tiny_llama, monkeypatch):
    called = []
    monkeypatch.setattr(tiny_llama.model, "generate", lambda *a, **k: called.append(1))
    with pytest.raises(EditError, match=r"shape \(1, 32\); this model's hidden size is 64"):
        generate_grid(tiny_llama, ["hi"], [edit_with(directions=torch.ones(1, 32))])
    assert called == []


def test_out_of_range_layer_unknown_rule_and_nan_directions_are_rejected(tiny_llama):
    with pytest.raises(EditError, match="Layer 7 is out of range: the model has 3 layers"):
        generate_grid(tiny_llama, ["hi"], [edit_with(layer=7)])
    with pytest.raises(EditError, match="Unknown edit rule 'bogus'"):
        generate_grid(tiny_llama, ["hi"], [edit_with(rule="bogus")])
    nan = torch.full((1, 64), math.nan)
    with pytest.raises(EditError, match="NaN or inf"):
        generate_grid(tiny_llama, ["hi"], [edit_with(directions=nan)])


def test_edits_combine_and_bad_sampling_is_rejected():
    a, b = edit_with(layer=0), edit_with(layer=2)
    assert [e.layer for e in (a + b).layer_edits] == [0, 2]
    with pytest.raises(Exception, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)


def _plan_for(positions, hidden=4):
    from alignez_core.engine.edit import compile_plan

    edit = Edit((LayerEdit(0, torch.ones(1, hidden), 1.0, "add", "residual", positions),))
    return compile_plan([edit], 1, hidden, torch.device("cpu"))


def test_prompt_positions_edit_every_prompt_token_in_the_first_forward_only():
    plan = _plan_for("prompt")
    prefill = torch.zeros(1, 3, 4)
    plan.apply(("residual", 0), prefill)
    assert torch.equal(prefill, torch.ones(1, 3, 4))  # every prompt token pushed
    step = torch.zeros(1, 1, 4)
    assert torch.equal(plan.apply(("residual", 0), step), torch.zeros(1, 1, 4))  # decode: none
    last = torch.zeros(1, 3, 4)
    _plan_for("last").apply(("residual", 0), last)
    assert last[0, :2].abs().sum() == 0 and torch.equal(last[0, 2], torch.ones(4))


def test_prompt_positions_change_the_answer_through_the_cache(tiny_llama):
    push = Edit((LayerEdit(1, torch.ones(1, 64), 8.0, "add", "residual"),), positions="prompt")
    base, edited = generate_grid(tiny_llama, ["hi there"], [None, push], GREEDY_12)[0]
    assert base != edited


def test_one_row_holds_axes_at_different_positions():
    from alignez_core.engine.edit import compile_plan

    every = Edit((LayerEdit(0, torch.ones(1, 4), 1.0, "add", "residual"),), positions="all")
    last = Edit((LayerEdit(0, torch.ones(1, 4), 10.0, "add", "residual"),), positions="last")
    plan = compile_plan([every + last], 1, 4, torch.device("cpu"))
    hidden = torch.zeros(1, 3, 4)
    plan.apply(("residual", 0), hidden)
    assert torch.equal(hidden[0, 0], torch.ones(4))  # only the `all` axis reaches token 0
    assert torch.equal(hidden[0, 2], torch.full((4,), 11.0))  # both reach the last token
    with pytest.raises(EditError, match="positions must be one of last, all, prompt"):
        compile_plan([Edit(positions="middle")], 1, 4, torch.device("cpu"))


GREEDY_12 = SamplingConfig(max_new_tokens=12, min_new_tokens=12)
