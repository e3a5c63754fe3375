import copy
import math
from dataclasses import replace

import pytest
import torch

from alignez_core.axes.axis import preset
from alignez_core.axes.subspace import SubspaceConfig
from alignez_core.engine.edit import Edit, EditError
from alignez_core.engine.generation import SamplingConfig
from alignez_core.errors import FitError
from alignez_core.fitting.fit import FitConfig, fit_axis
from alignez_core.steering import SteerSettings, axis_edit, generate, plan_edits, stream
from alignez_core.steering.overlap import subspace_overlap

GREEDY = SamplingConfig(max_new_tokens=12, min_new_tokens=12)


def test_fit_produces_layers_and_timings(tiny_pack, tiny_llama):
    assert tiny_pack.num_layers == tiny_llama.num_layers
    assert any(r > 0 for r in tiny_pack.ranks())
    assert all(p <= 6 for p in tiny_pack.pairs_kept())


def test_every_pair_filtered_out_fails_clearly(tiny_llama):
    config = FitConfig(
        n_queries=2, readout="answers", subspace=SubspaceConfig(max_pair_cosine=-1.0)
    )
    with pytest.raises(FitError, match="filtered out at every layer"):
        fit_axis(tiny_llama, preset("cheerful"), ["a?", "b?"], config)


def test_strength_zero_reproduces_base_exactly(tiny_llama, tiny_pack):
    (answer,) = generate(tiny_llama, ["hi"], {tiny_pack: 0.0}, sampling=GREEDY)
    assert answer.base == answer.edited and answer.layers == {"cheerful": ()}


@pytest.mark.parametrize("rule", ["subspace", "project", "tanh", "mean_diff"])
def test_each_rule_changes_the_edited_row_only(tiny_llama, tiny_pack, rule):
    (plain,) = generate(tiny_llama, ["hi"], {}, sampling=GREEDY)
    (answer,) = generate(
        tiny_llama, ["hi"], {tiny_pack: 8.0}, SteerSettings(rule=rule), sampling=GREEDY
    )
    assert answer.base == plain.base
    assert answer.edited != answer.base
    assert 0 < len(answer.layers["cheerful"]) <= 5


def test_steer_direction_follows_the_slider_sign(tiny_llama, tiny_pack):
    (edits,) = plan_edits(tiny_llama, ["hello"], {tiny_pack: 1.0})
    for item in edits[0].edit.layer_edits:
        mean = tiny_pack.layers[item.layer].mean_difference
        assert float(item.directions[0] @ mean) > 0  # points toward the positive pole
        assert item.strength > 0
    (negative,) = plan_edits(tiny_llama, ["hello"], {tiny_pack: -1.0})
    assert all(item.strength < 0 for item in negative[0].edit.layer_edits)


def test_two_axes_at_once_and_their_overlap(tiny_llama, tiny_pack):
    config = FitConfig(n_queries=4, pooling="last")
    other = fit_axis(tiny_llama, preset("concise"), ["a?", "b?", "c?", "d?"], config)
    # A fixed scale: on random weights a calibrated edge can be too small to flip a greedy token.
    settings = SteerSettings(scale=0.1)
    steer = {tiny_pack: 4.0, other: -4.0}
    (answer,) = generate(tiny_llama, ["hi"], steer, settings, sampling=GREEDY)
    assert set(answer.layers) == {"cheerful", "concise"}
    (only_one,) = generate(tiny_llama, ["hi"], {tiny_pack: 4.0}, settings, sampling=GREEDY)
    assert answer.edited != only_one.edited
    self_overlap = subspace_overlap(tiny_pack, tiny_pack)
    assert all(
        o.max_cosine == pytest.approx(1.0, abs=1e-4) for o in self_overlap if o.principal_cosines
    )
    cross = subspace_overlap(tiny_pack, other)
    assert len(cross) == tiny_llama.num_layers
    assert all(0.0 <= o.max_cosine <= 1.0 + 1e-6 for o in cross)


def test_stream_ends_with_the_batched_answer(tiny_llama, tiny_pack):
    *_, last = stream(tiny_llama, "hi", {tiny_pack: 4.0}, sampling=GREEDY)
    (answer,) = generate(tiny_llama, ["hi"], {tiny_pack: 4.0}, sampling=GREEDY)
    assert last == (answer.base, answer.edited)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_slider_is_rejected(tiny_llama, tiny_pack, bad):
    with pytest.raises(EditError, match="strength of axis 'cheerful' must be finite"):
        generate(tiny_llama, ["hi"], {tiny_pack: bad})


def test_unknown_rule_and_pinned_layers(tiny_llama, tiny_pack):
    with pytest.raises(EditError, match="Unknown rule 'magic'"):
        SteerSettings(rule="magic")
    query = torch.zeros(tiny_llama.num_layers, tiny_llama.hidden_size)
    pinned = axis_edit(tiny_pack, 1.0, query, SteerSettings(rule="mean_diff", layers=(0, 2)))
    assert pinned.layers == (0, 2)


def test_a_pack_steers_with_its_fitted_rule_and_positions_unless_told_otherwise(
    tiny_llama, tiny_pack
):
    assert (tiny_pack.fitted_rule(), tiny_pack.fitted_positions()) == ("subspace", "last")
    persona_like = copy.copy(tiny_pack)
    persona_like.rule_defaults = {"rule": "mean_diff", "positions": "all"}
    prompts = ["Tell me about rain."]
    as_fitted = generate(tiny_llama, prompts, {persona_like: 1.0}, SteerSettings(), GREEDY)
    told = SteerSettings(rule="mean_diff", positions="all")
    explicit = generate(tiny_llama, prompts, {tiny_pack: 1.0}, told, GREEDY)
    assert as_fitted[0].edited == explicit[0].edited
    for asked, rule in ((SteerSettings(), "add"), (SteerSettings("project"), "project")):
        edit = plan_edits(tiny_llama, prompts, {persona_like: 1.0}, asked)[0][0].edit
        # the caller's rule wins; the positions it left open are the pack's
        assert {(item.rule, item.positions) for item in edit.layer_edits} == {(rule, "all")}


def test_axis_edit_at_zero_top_n_and_each_sign(tiny_llama, tiny_pack):
    from alignez_core.engine.activations import query_embeddings

    query = query_embeddings(tiny_llama, ["hello"], tiny_pack.pooling, tiny_pack.site)[0]
    settings = SteerSettings(rule="subspace")
    zero = axis_edit(tiny_pack, 0.0, query, settings)
    own = settings.for_pack(tiny_pack).chosen_positions
    assert (zero.axis, zero.strength, zero.layers) == ("cheerful", 0.0, ())
    assert zero.edit == Edit(positions=own)
    everywhere = SteerSettings(rule="subspace", band=(0.0, 1.0))
    full = axis_edit(tiny_pack, 2.0, query, everywhere)
    top = axis_edit(tiny_pack, 2.0, query, replace(everywhere, top_n=1))
    assert len(top.layers) == 1 < len(full.layers) and top.layers[0] in full.layers
    assert full.strength == 2.0 and len(full.choices) == len(full.layers)
    up, down = (axis_edit(tiny_pack, s, query, settings) for s in (2.0, -2.0))
    for choice in up.choices:
        assert (choice.cosines <= 0).all()  # toward +: the directions the prompt lacks
    for choice in down.choices:
        assert (choice.cosines >= 0).all()  # toward −: the ones it holds
    assert any(len(c.cosines) for c in up.choices) and any(len(c.cosines) for c in down.choices)
    with pytest.raises(EditError, match="strength of axis 'cheerful' must be finite"):
        axis_edit(tiny_pack, float("nan"), query, settings)
