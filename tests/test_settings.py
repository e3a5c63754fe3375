"""SteerSettings (steering/settings.py): every value checked at the boundary with a message that
names it, and the band's layers on a model of a given depth."""

import pytest

from alignez_core.engine.budget import LayerBudget, budget_summary
from alignez_core.errors import EditError
from alignez_core.steering import DEFAULT_BAND, SteerSettings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"rule": "nope"},
            "Unknown rule 'nope'; choose one of subspace, mean_diff, project, tanh.",
        ),
        ({"positions": "middle"}, "positions must be one of last, all, prompt, got 'middle'."),
        ({"top_n": 0}, "top_n must be 1–64, got 0."),
        ({"top_n": 65}, "top_n must be 1–64, got 65."),
        ({"band": (0.7, 0.3)}, "band must be two fractions 0 ≤ from < to ≤ 1, got (0.7, 0.3)."),
        ({"band": (-0.1, 0.5)}, "band must be two fractions 0 ≤ from < to ≤ 1, got (-0.1, 0.5)."),
        ({"band": (0.5, 1.1)}, "band must be two fractions 0 ≤ from < to ≤ 1, got (0.5, 1.1)."),
        ({"band": (0.5, 0.5)}, "band must be two fractions 0 ≤ from < to ≤ 1, got (0.5, 0.5)."),
        ({"band": (float("nan"), 0.5)}, "band must be finite, got nan."),
        ({"scale": float("inf")}, "scale must be finite, got inf."),
        ({"budget": 0.0}, "budget must be in (0, 10] or None, got 0.0."),
        ({"budget": 10.5}, "budget must be in (0, 10] or None, got 10.5."),
        ({"budget": float("nan")}, "budget must be finite, got nan."),
    ],
)
def test_a_bad_value_is_refused_by_name(kwargs, message):
    with pytest.raises(EditError) as refused:
        SteerSettings(**kwargs)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [{"top_n": 1}, {"top_n": 64}, {"band": (0.0, 1.0)}, {"budget": 10.0}, {"budget": None}],
)
def test_the_edges_of_each_range_are_accepted(kwargs):
    assert SteerSettings(**kwargs)


def test_band_layers_cover_the_band_and_never_come_out_empty():
    assert SteerSettings(band=(0.25, 0.75)).band_layers(8) == (2, 3, 4, 5)
    assert SteerSettings(band=(0.0, 1.0)).band_layers(4) == (0, 1, 2, 3)
    assert SteerSettings(band=(0.9, 1.0)).band_layers(4) == (3,)  # rounds to [4, 4): keeps one
    assert SteerSettings(band=(0.5, 0.52)).band_layers(10) == (5,)
    low, high = DEFAULT_BAND
    assert SteerSettings().band_layers(20) == tuple(range(round(low * 20), round(high * 20)))


def test_filled_from_takes_only_what_is_left_open():
    mine = SteerSettings(rule="project", top_n=3)
    pack = SteerSettings(rule="mean_diff", band=(0.2, 0.6), positions="all", top_n=9)
    filled = mine.filled_from(pack)
    assert (filled.rule, filled.band, filled.positions, filled.top_n) == (
        "project",
        (0.2, 0.6),
        "all",
        3,
    )


def test_the_budget_sentence_says_what_happened():
    shared = [LayerBudget("residual", 3, 3.0, 2.0, 0.5), LayerBudget("residual", 4, 2.0, 2.0, 1.0)]
    assert budget_summary(shared) == (
        "The active axes push together at 2 layers (3–4); combined, 1.25× the strongest alone: "
        "scaled back to 50% of what the sliders ask at 1 layers to stay as fluent as one axis at "
        "its edge (turn the budget off in the settings)."
    )
    within = [LayerBudget("residual", 3, 1.0, 2.0, 1.0)]
    assert budget_summary(within) == (
        "The active axes push together at 1 layers (3); combined, 0.50× the strongest alone, "
        "within the budget."
    )
    assert budget_summary(within, None) == (
        "The active axes push together at 1 layers (3); combined, 0.50× the strongest alone "
        "(budget off: raw sums, which loop more often)."
    )
    from alignez_core.engine.budget import layer_span

    assert layer_span([12, 3, 4, 5, 10, 11, 4]) == "3–5, 10–12"
