"""Keeping several axes apart at a shared layer (engine/separate.py, steering/assign.py)."""

from dataclasses import replace

import pytest
import torch

from alignez_core.engine.edit import Edit, EditError, LayerEdit
from alignez_core.engine.separate import separate
from alignez_core.steering import SteerSettings, combine, plan_edits
from alignez_core.steering.assign import MAX_COMPENSATION, assign_layers
from alignez_core.steering.plan import AxisEdit, layer_budgets


def unit(v: list[float]) -> torch.Tensor:
    t = torch.tensor(v)
    return (t / t.norm())[None, :]


def two_at_one_layer(strengths=(2.0, -3.0)) -> list[LayerEdit]:
    a, b = unit([1.0, 0.0, 0.0]), unit([0.8, 0.6, 0.0])  # cos 0.8
    return [LayerEdit(4, a, strengths[0], "add", "residual"),
            LayerEdit(4, b, strengths[1], "add", "residual")]  # fmt: skip


def push(edit: LayerEdit) -> torch.Tensor:
    return edit.strength * edit.directions.sum(0)


def test_ordered_keeps_the_first_and_turns_the_second_away_from_it():
    before = two_at_one_layer()
    after = separate(before, "ordered")
    assert torch.allclose(push(after[0]), push(before[0]))
    assert float(push(after[0]) @ push(after[1])) == pytest.approx(0.0, abs=1e-6)
    for old, new in zip(before, after, strict=True):  # each keeps its slider's length
        assert float(push(new).norm()) == pytest.approx(float(push(old).norm()))


def test_symmetric_turns_both_by_the_same_angle():
    before = two_at_one_layer()
    after = separate(before, "symmetric")
    assert float(push(after[0]) @ push(after[1])) == pytest.approx(0.0, abs=1e-6)
    turned = [
        float(torch.cosine_similarity(push(old), push(new), dim=0))
        for old, new in zip(before, after, strict=True)
    ]
    assert turned[0] == pytest.approx(turned[1], abs=1e-6) and turned[0] < 0.999
    for old, new in zip(before, after, strict=True):
        assert float(push(new).norm()) == pytest.approx(float(push(old).norm()))


def test_lone_layers_relative_rules_and_none_are_left_alone():
    lone = LayerEdit(5, unit([0.0, 0.0, 1.0]), 1.0, "add", "residual")
    relative = LayerEdit(4, unit([0.0, 1.0, 0.0]), 1.0, "project", "residual")
    edits = [*two_at_one_layer(), lone, relative]
    out = separate(edits, "ordered")
    assert out[2] is lone and out[3] is relative
    assert separate(edits, None) == tuple(edits)
    with pytest.raises(EditError, match="separation must be one of ordered, symmetric"):
        separate(edits, "sideways")  # type: ignore[arg-type]
    with pytest.raises(EditError, match="separate must be one of"):
        SteerSettings(separate="sideways")  # type: ignore[arg-type]


def test_combined_rows_are_orthogonal_at_the_layers_two_axes_share(
    tiny_llama, tiny_pack, second_pack
):
    settings = SteerSettings(scale=0.1, budget=None, separate="ordered", rule="mean_diff")
    (plan,) = plan_edits(tiny_llama, ["hi"], {tiny_pack: 1.0, second_pack: -1.0}, settings)
    kept = combine(plan, settings).layer_edits
    raw = combine(plan, SteerSettings(scale=0.1, budget=None, rule="mean_diff")).layer_edits
    shared = {e.layer for e in kept if sum(o.layer == e.layer for o in kept) == 2}
    assert shared  # the two axes share layers on the tiny model
    for layer in shared:
        first, second = (push(e) for e in kept if e.layer == layer)
        assert float(first @ second) == pytest.approx(
            0.0, abs=1e-4 * float(first.norm() * second.norm())
        )
        raw_first, raw_second = (push(e) for e in raw if e.layer == layer)
        assert abs(float(raw_first @ raw_second)) > abs(float(first @ second))


def axis(name: str, layers: dict[int, float], rule: str = "add") -> AxisEdit:
    """An axis pushing 1.0 along its own direction at each layer, with these layer scores."""
    direction = unit([1.0, 0.0, 0.0] if name == "a" else [0.0, 1.0, 0.0])
    items = tuple(LayerEdit(layer, direction, 1.0, rule, "residual") for layer in layers)
    return AxisEdit(name, 1.0, tuple(layers), Edit(items), layer_scores=tuple(layers.items()))


def total_push(edit: AxisEdit) -> float:
    return sum(float(push(e).norm()) for e in edit.edit.layer_edits)


def test_assign_gives_each_shared_layer_to_the_axis_strongest_there():
    a = axis("a", {1: 1.0, 2: 0.9, 3: 0.2})
    b = axis("b", {2: 0.5, 3: 1.0, 4: 0.7})
    kept_a, kept_b = assign_layers([a, b])
    assert kept_a.layers == (1, 2) and kept_b.layers == (3, 4)
    assert total_push(kept_a) == pytest.approx(total_push(a))  # 3 pushes' length on 2 layers
    assert total_push(kept_b) == pytest.approx(total_push(b))
    tie = assign_layers([axis("a", {5: 1.0}), axis("b", {5: 1.0})])
    assert [e.layers for e in tie] == [(5,), (5,)]  # losing every layer keeps the strongest


def test_assign_shares_out_the_layers_and_caps_the_compensation():
    a = axis("a", {1: 1.0, 2: 1.0, 3: 1.0, 4: 0.5})
    b = axis("b", {1: 0.1, 2: 0.1, 3: 1.0, 4: 1.0, 5: 0.5})
    kept_a, kept_b = assign_layers([a, b])
    # a is far stronger at 1 and 2; at 3 (a tie) it has taken its half of the four shared
    assert kept_a.layers == (1, 2) and kept_b.layers == (3, 4, 5)
    assert [e.strength for e in kept_a.edit.layer_edits] == pytest.approx([2.0, 2.0])
    three = [a, axis("b", {1: 0.1, 2: 0.1, 3: 1.0, 4: 1.0}), axis("a", {2: 0.2, 3: 0.5, 4: 0.9})]
    third = assign_layers(three)[2]  # the first two took every layer: it keeps its strongest
    assert third.layers == (4,)
    assert [e.strength for e in third.edit.layer_edits] == pytest.approx([MAX_COMPENSATION])
    relative = axis("b", {1: 0.1}, rule="project")
    assert assign_layers([a, relative])[1] == relative


def test_combined_rows_with_assign_have_one_push_per_layer(tiny_llama, tiny_pack, second_pack):
    settings = SteerSettings(
        scale=0.1, budget=1.0, separate="assign", rule="mean_diff", band=(0.0, 1.0)
    )
    (plan,) = plan_edits(tiny_llama, ["hi"], {tiny_pack: 1.0, second_pack: -1.0}, settings)
    raw = combine(plan, replace(settings, budget=None, separate=None)).layer_edits
    assert len({e.layer for e in raw}) < len(raw) - 1  # the two axes share layers
    kept = combine(plan, settings).layer_edits
    assert len({e.layer for e in kept}) == len(kept)
    assert {e.layer for e in kept} == {e.layer for e in raw}  # every layer still pushed once
    assert layer_budgets(plan, settings) == ()  # nothing shared: the budget has nothing to do
