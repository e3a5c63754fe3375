import math

import pytest
import torch

from alignez_core import Edit, EditError, LayerEdit, SamplingConfig, generate_grid


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
