"""A joint calibration of two axes (fitting/joint.py) and the common scale it sets
(engine/budget.py `shared_scale`)."""

from dataclasses import replace

import pytest
import torch

from alignez_core.engine.budget import apply_budget
from alignez_core.engine.edit import LayerEdit
from alignez_core.errors import EditError, FitError
from alignez_core.fitting.joint import (
    JOINT_SCALES,
    JointCache,
    joint_calibration,
    pack_fingerprint,
)
from alignez_core.steering import SteerSettings

STRONG = SteerSettings(scale=0.5)  # far past any clean edge on the tiny model


def test_a_shared_scale_replaces_the_budget_at_shared_layers_only():
    a, b = torch.eye(3)[:1], torch.eye(3)[1:2]
    edits = [LayerEdit(4, a, 2.0, "add", "residual"), LayerEdit(4, b, 3.0, "add", "residual"),
             LayerEdit(5, a, 2.0, "add", "residual")]  # fmt: skip
    scaled, reports = apply_budget(edits, budget=1.0, shared_scale=0.6)
    assert [e.strength for e in scaled] == pytest.approx([1.2, 1.8, 2.0])
    assert [r.factor for r in reports] == [0.6]
    budgeted, _ = apply_budget(edits, budget=1.0)  # the budget alone: ‖(2, 3)‖ → 3
    assert [e.strength for e in budgeted] == pytest.approx([2 * 3 / 13**0.5, 3 * 3 / 13**0.5, 2])
    with pytest.raises(EditError, match="shared_scale must be in"):
        SteerSettings(shared_scale=0.0)


@pytest.fixture(scope="module")
def joint(tiny_llama, tiny_pack, second_pack):
    return joint_calibration(tiny_llama, tiny_pack, second_pack, STRONG, n_queries=3,
                             max_new_tokens=12)  # fmt: skip


def test_each_quadrant_keeps_the_top_of_its_clean_run_from_below(joint, tiny_pack, second_pack):
    assert joint.axes == (tiny_pack.name, second_pack.name)
    assert set(joint.scales) == {"++", "+-", "-+", "--"}
    assert len(joint.points) == 4 * len(JOINT_SCALES) and joint.queries == 3
    for quadrant, scale in joint.scales.items():
        mine = sorted((p for p in joint.points if p["quadrant"] == quadrant),
                      key=lambda p: p["scale"])  # fmt: skip
        run = 0
        while run < len(mine) and mine[run]["clean"]:
            run += 1
        assert scale == (mine[run - 1]["scale"] if run else JOINT_SCALES[-1])
    ratios = {(p["quadrant"], p["scale"]): p["perplexity_ratio"] for p in joint.points}
    assert any(ratios[q, 1.0] != ratios[q, 0.4] for q in joint.scales)  # the scale reached them
    chosen = joint.settings_for(STRONG, {tiny_pack.name: -1.0, second_pack.name: 0.5})
    assert chosen.shared_scale == joint.scales["-+"]
    assert joint.settings_for(STRONG, {tiny_pack.name: 1.0, second_pack.name: 0.0}) == STRONG


def test_the_cache_round_trips_in_either_order_and_drops_stale_or_broken_files(
    tmp_path, joint, tiny_pack, second_pack, tiny_llama
):
    cache = JointCache(tmp_path / "joint")
    assert cache.get(tiny_pack, second_pack) is None
    path = cache.put(joint, tiny_pack, second_pack)
    assert cache.get(tiny_pack, second_pack) == joint
    flipped = cache.get(second_pack, tiny_pack)
    assert flipped is not None and flipped.axes == joint.axes[::-1]
    assert flipped.scale_for(1.0, -1.0) == joint.scale_for(-1.0, 1.0)
    refitted = replace(tiny_pack, residual_norms=[2 * n for n in tiny_pack.residual_norms])
    assert pack_fingerprint(refitted) != pack_fingerprint(tiny_pack)
    assert cache.get(refitted, second_pack) is None
    path.write_text("{not json")
    assert cache.get(tiny_pack, second_pack) is None


def test_one_axis_twice_or_a_rising_scale_list_is_refused(tiny_llama, tiny_pack, second_pack):
    with pytest.raises(FitError, match="two different axes"):
        joint_calibration(tiny_llama, tiny_pack, tiny_pack)
    with pytest.raises(FitError, match="joint scales must decrease"):
        joint_calibration(tiny_llama, tiny_pack, second_pack, scales=(0.5, 1.0))
