from dataclasses import replace

import pytest

from alignez_core.axes.pack import SliderCalibration
from alignez_core.errors import FitError
from alignez_core.fitting.calibrate import (
    BASE_CALIBRATION,
    CalibrationConfig,
    _last_clean,
    calibrate,
    calibration_for_kind,
    is_clean,
)
from alignez_core.measure.judges import degenerate
from alignez_core.steering import SteerSettings, plan_edits

GRID = (0.02, 0.04, 0.06)


def _points(clean_positive, clean_negative):
    return [
        {"sign": sign, "c": c, "clean": ok}
        for sign, flags in ((1, clean_positive), (-1, clean_negative))
        for c, ok in zip(GRID, flags, strict=True)
    ]


def test_the_edge_is_the_last_clean_strength_of_the_run_from_the_bottom():
    points = _points([True, True, False], [True, False, True])
    assert _last_clean(points, 1, GRID) == 0.04
    assert _last_clean(points, -1, GRID) == 0.02  # a clean point past a dirty one never counts
    assert _last_clean(_points([False] * 3, [True] * 3), 1, GRID) == 0.01  # none: half the bottom
    assert _last_clean(_points([True] * 3, [True] * 3), -1, GRID) == 0.06


def test_degenerate_answers_are_loops_and_empties():
    assert degenerate("the cat the cat the cat the cat the cat the cat the cat")
    assert degenerate("")
    assert not degenerate("A walk in the park, then coffee with a friend nearby.")


def test_fit_stores_one_strength_per_sign_from_the_grid(tiny_pack):
    calibration = tiny_pack.calibration
    grid = CalibrationConfig().grid
    assert calibration.positive in (*grid, grid[0] / 2)
    assert calibration.negative in (*grid, grid[0] / 2)
    assert {(p["sign"], p["c"]) for p in calibration.points} == {
        (s, c) for s in (1, -1) for c in grid
    }
    assert calibration.queries == 3 and calibration.base["perplexity"] > 0
    assert tiny_pack.timings["calibration"] == calibration.seconds


def test_calibration_reads_the_cutoff_it_is_given(tiny_llama, tiny_pack):
    """A perplexity budget nothing can meet leaves half the bottom; a loose one the top."""
    queries = [p.query for p in tiny_pack.pairs]
    strict = calibrate(tiny_llama, tiny_pack, queries, config=CalibrationConfig(
        n_queries=2, grid=GRID, max_new_tokens=8, max_perplexity_ratio=0.0))  # fmt: skip
    assert (strict.positive, strict.negative) == (0.01, 0.01)
    assert not any(p["clean"] for p in strict.points)
    loose = calibrate(tiny_llama, tiny_pack, queries, config=CalibrationConfig(
        n_queries=2, grid=GRID, max_new_tokens=8, max_perplexity_ratio=1e9,
        min_distinct_2=0.0, max_repetition=1e9))  # fmt: skip
    assert (loose.positive, loose.negative) == (0.06, 0.06)
    with pytest.raises(FitError, match="strictly increasing"):
        CalibrationConfig(grid=(0.04, 0.02))


def test_the_slider_maps_onto_the_calibrated_strength_per_sign(tiny_llama, tiny_pack):
    pack = replace(tiny_pack, calibration=SliderCalibration(positive=0.06, negative=0.02))
    norms = pack.residual_norms
    for slider, c in ((1.0, 0.06), (-1.0, 0.02), (1.5, 0.06), (-2.0, 0.02)):
        (edits,) = plan_edits(tiny_llama, ["hello"], {pack: slider})
        items = edits[0].edit.layer_edits
        assert items, "the band edits at least one layer"
        for item in items:
            assert item.site == "residual" and item.rule == "add"
            assert item.strength == pytest.approx(slider * c * norms[item.layer])
    # An explicit scale overrides the calibration; without calibration the default applies.
    (edits,) = plan_edits(tiny_llama, ["hello"], {pack: 1.0}, SteerSettings(scale=0.5))
    assert all(i.strength == pytest.approx(0.5 * norms[i.layer]) for i in edits[0].edit.layer_edits)
    bare = replace(tiny_pack, calibration=None)
    (edits,) = plan_edits(tiny_llama, ["hello"], {bare: 1.0})
    assert all(
        i.strength == pytest.approx(0.04 * norms[i.layer]) for i in edits[0].edit.layer_edits
    )


def test_the_slider_note_says_what_one_means_per_sign(tiny_pack):
    pack = replace(tiny_pack, calibration=SliderCalibration(positive=0.04, negative=0.015))
    assert "+1 pushes 0.04, −1 pushes 0.015" in pack.slider_note()
    assert "not calibrated" in replace(tiny_pack, calibration=None).slider_note()


def test_a_clean_strength_adds_no_looping_answer_beyond_the_allowance():
    base = {"perplexity": 2.0, "degenerate": 1}
    strict = CalibrationConfig()
    assert is_clean({"perplexity": 2.4, "degenerate": 1}, base, strict)
    assert not is_clean({"perplexity": 2.4, "degenerate": 2}, base, strict)
    assert not is_clean({"perplexity": 2.6, "degenerate": 0}, base, strict)  # over 1.25×
    allowing = replace(strict, n_queries=8, extra_looping=1)
    assert is_clean({"perplexity": 2.4, "degenerate": 2}, base, allowing)
    assert not is_clean({"perplexity": 2.4, "degenerate": 3}, base, allowing)
    with pytest.raises(FitError, match="extra_looping must be 0–2, got 3"):
        CalibrationConfig(extra_looping=3)


def test_a_base_model_is_calibrated_on_more_queries_allowing_one_loop():
    assert calibration_for_kind("chat") == CalibrationConfig()
    base = calibration_for_kind("base")
    assert base is BASE_CALIBRATION
    assert (base.n_queries, base.extra_looping, base.max_perplexity_ratio) == (8, 1, 1.3)
