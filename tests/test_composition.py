"""Several axes at once (evaluation/composition.py): shares against base and by interaction."""

import numpy as np
import pytest

from alignez_core.engine.generation import SamplingConfig
from alignez_core.evaluation.composition import (
    clearly_moves,
    compose,
    composition_table,
    goal_met,
    interaction_share,
)
from alignez_core.measure.judges import Judge
from alignez_core.steering import SteerSettings


def test_interaction_counts_only_what_a_adds_on_top_of_b():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.1, 24)
    alone = base + 0.4  # A alone moves its judge +0.4
    other_alone = base + 0.3  # B alone moves A's judge too, by +0.3
    pair = other_alone + 0.2  # next to B, A adds only half of its effect
    share = interaction_share(pair, other_alone, alone, base)
    assert share.mean == pytest.approx(0.5)
    assert share.low <= 0.5 <= share.high
    # against base the same pair looks like more than all of A's effect: B's push counted as A's
    assert (pair - base).mean() / (alone - base).mean() == pytest.approx(1.25)


def test_interaction_interval_widens_with_noisy_prompts():
    rng = np.random.default_rng(1)
    base = np.zeros(24)
    alone = base + 1.0
    steady = interaction_share(alone * 0.7, base, alone, base)
    noisy = interaction_share(alone * 0.7 + rng.normal(0, 0.5, 24), base, alone, base)
    assert steady.low == pytest.approx(0.7) and steady.high == pytest.approx(0.7)
    assert noisy.high - noisy.low > 0.2


def test_a_share_is_taken_only_of_a_clear_effect_the_way_the_slider_points():
    assert clearly_moves("tone", 0.06, direction=1.0)
    assert not clearly_moves("tone", 0.04, direction=1.0)  # under VADER's 0.05
    assert not clearly_moves("tone", -0.3, direction=1.0)  # the wrong way
    assert clearly_moves("grade", -0.6, direction=-1.0)  # simple +1 lowers the grade
    assert not clearly_moves("words", -2.0, direction=-1.0)  # under 3 words
    assert clearly_moves("tone", -0.3, direction=0.0)  # direction unknown: either way
    assert not clearly_moves("custom", 0.0, direction=0.0)


def test_composition_reports_both_shares_per_axis(tiny_llama, tiny_pack, second_pack):
    # The tiny model's byte soup has no words to count; a judge that reads every byte moves with
    # any edit, so the shares below are computed, not skipped.
    judge = Judge("bytes", "mean byte value", lambda texts: [sum(t.encode()) / 8 for t in texts])
    axes = {"cheerful": (tiny_pack, judge), "concise": (second_pack, judge)}
    prompts = ["hi", "why?", "how so?"]
    cells = compose(tiny_llama, axes, prompts, SteerSettings(scale=0.1), strengths=(4.0,),
                    sampling=SamplingConfig(max_new_tokens=8), directions={})  # fmt: skip
    assert [(c.sliders, c.budget) for c in cells] == [
        ({}, None), ({"cheerful": 4.0}, None), ({"concise": 4.0}, None),
        ({"cheerful": 4.0, "concise": 4.0}, 1.0), ({"cheerful": 4.0, "concise": 4.0}, None),
    ]  # fmt: skip
    assert cells[0].shifts == {"cheerful": 0.0, "concise": 0.0}
    assert all(not c.interaction for c in cells[:3])  # shares are a pair's
    for pair in cells[3:]:
        for name, alone, other in (
            ("cheerful", cells[1], cells[2]),
            ("concise", cells[2], cells[1]),
        ):
            assert alone.shifts[name] != 0
            assert pair.retained[name] == pytest.approx(pair.shifts[name] / alone.shifts[name])
            share = pair.interaction[name]["bytes"]
            assert share is not None
            expected = (pair.shifts[name] - other.shifts[name]) / alone.shifts[name]
            assert share.mean == pytest.approx(expected)
    table = composition_table(cells, len(prompts))
    assert "| cheerful +4, concise +4 | 1 |" in table
    assert "| cheerful +4, concise +4 | off |" in table
    assert "Budget 1: " in table and "Budget off (raw sums): " in table


def test_the_pole_judge_reads_each_axis_beside_its_own(tiny_llama, tiny_pack, second_pack):
    judge = Judge("bytes", "mean byte value", lambda texts: [sum(t.encode()) / 8 for t in texts])
    axes = {"cheerful": (tiny_pack, judge), "concise": (second_pack, judge)}
    cells = compose(tiny_llama, axes, ["hi", "why?"], SteerSettings(scale=0.1), strengths=(4.0,),
                    budgets=(None,), sampling=SamplingConfig(max_new_tokens=8), poles=True,
                    directions={})  # fmt: skip
    pair = cells[-1]
    assert set(pair.interaction["cheerful"]) == {"bytes", "pole"}
    assert set(pair.interaction["concise"]) == {"bytes", "pole"}


def test_the_goal_counts_pairs_whose_every_axis_keeps_enough():
    from alignez_core.evaluation.composition import CompositionCell
    from alignez_core.evaluation.evaluate import Interval

    def cell(a: Interval | None, b: Interval | None) -> CompositionCell:
        return CompositionCell({"a": 1.0, "b": 1.0}, None, {}, {}, 2.0, 0,
                               {"a": {"tone": a}, "b": {"grade": b}})  # fmt: skip

    kept, lost = Interval(0.8, 0.6, 1.0), Interval(0.5, 0.3, 0.7)
    assert goal_met(cell(kept, Interval(1.4, 1.1, 1.8))) is True
    assert goal_met(cell(kept, lost)) is False
    assert goal_met(cell(kept, None)) is None  # b alone did not clearly move its judge
    table = composition_table([cell(None, None), cell(kept, Interval(1.4, 1.1, 1.8))], 2)
    assert "grade 100% [100%, 100%]" in table  # capped in the summary
