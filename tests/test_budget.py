"""The shared strength budget: several axes at one layer stay within budget × the strongest."""

import pytest
import torch

from alignez_core.engine.budget import apply_budget, budget_summary
from alignez_core.engine.edit import EditError, LayerEdit
from alignez_core.engine.generation import SamplingConfig
from alignez_core.steering import SteerSettings, generate, plan_edits

GREEDY = SamplingConfig(max_new_tokens=12, min_new_tokens=12)


def unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return (v / v.norm())[None, :]


def combined(edits, site="residual", layer=3) -> torch.Tensor:
    return sum(
        e.strength * e.directions.sum(0) for e in edits if (e.site, e.layer) == (site, layer)
    )


@pytest.mark.parametrize("budget", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("seed", range(6))
def test_the_combined_push_never_exceeds_the_budget_and_keeps_the_sliders_ratio(budget, seed):
    g = torch.Generator().manual_seed(seed)
    n = 2 + seed % 3
    steps = (torch.rand(n, generator=g) * 4 - 2).tolist()
    edits = [
        LayerEdit(3, unit(16, seed * 10 + i), s, "add", "residual") for i, s in enumerate(steps)
    ]
    other_layer = LayerEdit(5, unit(16, 99), 2.0, "add", "residual")  # alone: never scaled
    relative = LayerEdit(3, unit(16, 98), 2.0, "project", "mlp")  # not additive: untouched
    out, (report,) = apply_budget([*edits, other_layer, relative], budget)
    strongest = max(abs(s) for s in steps)
    assert float(combined(out).norm()) <= budget * strongest * (1 + 1e-5)
    assert report.strongest == pytest.approx(strongest, rel=1e-5)
    ratios = [o.strength / e.strength for o, e in zip(out[:n], edits, strict=True)]
    assert all(r == pytest.approx(report.factor) for r in ratios) and report.factor <= 1
    assert out[n:] == (other_layer, relative)
    raw, _ = apply_budget(edits, None)
    assert raw == tuple(edits)


def test_the_summary_says_when_axes_were_scaled_back():
    a, b = unit(8, 1), unit(8, 2)
    _, reports = apply_budget([LayerEdit(1, a, 1.0, "add", "residual"),
                               LayerEdit(1, b, 1.0, "add", "residual")], 1.0)  # fmt: skip
    assert "scaled back to" in budget_summary(reports)
    _, raw = apply_budget([LayerEdit(1, a, 1.0, "add", "residual"),
                           LayerEdit(1, b, 1.0, "add", "residual")], None)  # fmt: skip
    assert "budget off" in budget_summary(raw, None)
    assert budget_summary(()) == ""
    with pytest.raises(EditError, match="budget must be in"):
        SteerSettings(budget=0.0)


def test_two_axes_at_zero_give_base_and_one_at_zero_gives_the_other_alone(
    tiny_llama, tiny_pack, second_pack
):
    settings = SteerSettings(scale=0.1)
    (both_zero,) = generate(tiny_llama, ["hi"], {tiny_pack: 0.0, second_pack: 0.0}, settings,
                            sampling=GREEDY)  # fmt: skip
    assert both_zero.edited == both_zero.base
    (alone,) = generate(tiny_llama, ["hi"], {tiny_pack: 4.0}, settings, sampling=GREEDY)
    (with_zero,) = generate(tiny_llama, ["hi"], {tiny_pack: 4.0, second_pack: 0.0}, settings,
                            sampling=GREEDY)  # fmt: skip
    assert with_zero.edited == alone.edited


def test_two_axes_at_shared_layers_are_budgeted_in_the_batch(tiny_llama, tiny_pack, second_pack):
    steer = {tiny_pack: 2.0, second_pack: 2.0}
    (plans,) = plan_edits(tiny_llama, ["hi"], steer, SteerSettings(scale=0.1))
    parts = [e for plan in plans for e in plan.edit.layer_edits]
    budgeted, reports = apply_budget(parts, 1.0)
    assert reports  # the two axes share band layers
    for r in reports:
        assert float(combined(budgeted, r.site, r.layer).norm()) <= r.strongest * (1 + 1e-5)
