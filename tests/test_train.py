"""Trained directions (`alignez_core/fitting/train.py`) on tiny models: on pairs that carry a
planted signal, training lowers the loss and widens the preference margin on pairs it never saw;
runs are repeatable; its hooks touch no other call and never outlive it; a trained fit
round-trips through save/load and export."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest
import torch

from alignez_core.axes.axis import preset
from alignez_core.axes.pack import AxisPack, PreferencePair
from alignez_core.errors import FitCancelled, FitError
from alignez_core.fitting.fit import FitConfig, fit_axis, fit_settings, refine_axis
from alignez_core.fitting.pairs import PairConfig
from alignez_core.fitting.train import (
    TrainConfig,
    _encode_rows,
    _losses,
    _Vectors,
    train_directions,
)
from alignez_core.interop import control_vectors
from alignez_core.steering import SteerSettings, steer
from tests.tiny import make_model

POSITIVE_CHARS, NEGATIVE_CHARS = "abcdefgh", "stuvwxyz"
NORMS = [8.0, 8.0, 8.0]  # about a tiny model's residual norm (√64 at unit RMS)
QUICK = TrainConfig(strength=0.1, epochs=4, learning_rate=0.1)


@pytest.fixture(scope="module")
def planted():
    """A tiny model whose LM head reads one hidden direction as "positive letters up, negative
    letters down", pairs whose positive answers use those letters, and that direction."""
    lm = make_model("llama", seed=1)
    torch.manual_seed(3)
    direction = torch.randn(64)
    direction /= direction.norm()
    with torch.no_grad():
        weight = lm.model.lm_head.weight
        for chars, sign in ((POSITIVE_CHARS, 1.0), (NEGATIVE_CHARS, -1.0)):
            for ch in chars:
                weight[lm.tokenizer(ch, add_special_tokens=False)["input_ids"][0]] += (
                    sign * direction
                )
    rng = random.Random(0)

    def word(chars: str) -> str:
        return "".join(rng.choice(chars) for _ in range(12))

    pairs = [
        PreferencePair(f"question {i}?", word(POSITIVE_CHARS), word(NEGATIVE_CHARS), "", "")
        for i in range(16)
    ]
    torch.manual_seed(4)
    start = {1: torch.randn(64), 2: torch.randn(64)}  # not the planted direction
    return lm, pairs, direction, start


def test_training_widens_the_margin_on_held_out_pairs_and_finds_the_planted_direction(planted):
    lm, pairs, direction, start = planted
    units, log = train_directions(lm, pairs, start, NORMS, "all", QUICK)
    assert (log.train_pairs, log.held_out_pairs) == (12, 4)
    assert log.best_epoch >= 1
    assert log.held_out_losses[log.best_epoch] < log.held_out_losses[0] - 1.0
    assert log.train_losses[-1] < log.train_losses[0]
    assert log.held_out_margins[log.best_epoch] > log.held_out_margins[0] + 10.0
    for layer, unit in units.items():
        assert unit.norm() == pytest.approx(1.0, abs=1e-5)
        before = float(start[layer] @ direction / start[layer].norm())
        assert float(unit @ direction) > before + 0.3


def test_the_likelihood_objective_trains_too(planted):
    lm, pairs, direction, start = planted
    units, log = train_directions(
        lm,
        pairs,
        start,
        NORMS,
        "all",
        TrainConfig(objective="likelihood", strength=0.1, epochs=4, learning_rate=0.1),
    )
    assert log.held_out_margins[log.best_epoch] > log.held_out_margins[0]
    assert float(units[2] @ direction) > float(start[2] @ direction / start[2].norm())


def test_the_same_seed_gives_bit_identical_directions(planted):
    lm, pairs, _, start = planted
    first, log_a = train_directions(lm, pairs, start, NORMS, "all", QUICK)
    second, log_b = train_directions(lm, pairs, start, NORMS, "all", QUICK)
    assert all(torch.equal(first[i], second[i]) for i in first)
    assert log_a.held_out_losses == log_b.held_out_losses
    other, _ = train_directions(
        lm,
        pairs,
        start,
        NORMS,
        "all",
        TrainConfig(strength=0.1, epochs=4, learning_rate=0.1, seed=1),
    )
    assert not all(torch.equal(first[i], other[i]) for i in first)


def test_the_vectors_act_only_on_the_calling_thread_and_their_hooks_leave(planted):
    lm, pairs, _, start = planted
    vectors = _Vectors(lm, start, NORMS)
    batch = _encode_rows(lm, pairs[:2], "all", 48)
    with torch.no_grad():
        plain = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        seen: dict[str, torch.Tensor] = {}
        with vectors.adding(batch, 0.5):
            edited = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

            def other_call() -> None:
                seen["logits"] = lm.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                ).logits

            thread = threading.Thread(target=other_call)
            thread.start()
            thread.join()
    assert not torch.allclose(edited, plain, atol=1e-3)
    assert torch.equal(seen["logits"], plain)
    assert all(not block._forward_hooks for block in lm.layout.blocks)


def test_the_edit_covers_the_positions_the_slider_will_edit(planted):
    lm, pairs, _, _ = planted
    rows = {p: _encode_rows(lm, pairs[:1], p, 48) for p in ("all", "last", "prompt")}
    real = rows["all"].attention_mask[0].bool()
    answer = rows["all"].answer_mask[0].bool()
    first_answer = int(answer.nonzero()[0])
    assert rows["all"].edit_mask[0, :, 0].bool().equal(real)
    assert rows["prompt"].edit_mask[0, :, 0].bool().equal(real & ~answer)
    last = rows["last"].edit_mask[0, :, 0].bool()
    assert last[first_answer - 1 :].all() and not last[: first_answer - 1].any()
    assert rows["all"].signs.flatten().tolist() == [1.0, 1.0, -1.0, -1.0]


def test_cancelling_stops_training_and_removes_its_hooks(planted):
    lm, pairs, _, start = planted
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "training" and done == 1:
            cancel.set()

    with pytest.raises(FitCancelled):
        train_directions(lm, pairs, start, NORMS, "all", QUICK, progress, cancel)
    assert all(not block._forward_hooks for block in lm.layout.blocks)


def test_the_anchor_charges_only_a_preferred_answer_made_less_likely():
    """DPOP's penalty: a pair whose edit lowers the preferred answer's likelihood loses margin in
    the loss; one that raises it, or the plain BiPO loss, is unchanged; the margin reported is
    the raw preference either way."""
    reference = torch.zeros(8)
    lengths = torch.full((8,), 5.0)
    # rows per pair: (positive, +), (negative, +), (positive, −), (negative, −)
    falling = torch.tensor([-2.0, -6.0, -6.0, -2.0, 2.0, -2.0, -2.0, 2.0])  # first pair falls
    plain, anchored = TrainConfig(), TrainConfig(anchor=50.0)
    loss_plain, margin_plain = _losses(falling, reference, lengths, plain)
    loss_anchored, margin_anchored = _losses(falling, reference, lengths, anchored)
    assert torch.equal(margin_plain, margin_anchored)
    assert loss_anchored[0] > loss_plain[0] + 5.0  # 2 nats lost × 50 × β 0.1 = 10 off the margin
    assert loss_anchored[1] == loss_plain[1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"objective": "dpo"}, "objective must be one of bipo, likelihood"),
        ({"strength": 0.0}, "training strength is out of range"),
        ({"epochs": 0}, "training epochs is out of range"),
        ({"held_out": 1.0}, "training held_out is out of range"),
        ({"anchor": -1.0}, "training anchor is out of range"),
        ({"learning_rate": float("nan")}, "training learning_rate is out of range"),
    ],
)
def test_bad_training_settings_are_refused_with_their_name(changes, message):
    with pytest.raises(FitError, match=message):
        TrainConfig(**changes)


def test_nothing_to_train_is_a_clear_error(planted):
    lm, pairs, _, start = planted
    with pytest.raises(FitError, match="no direction on the layers it steers"):
        train_directions(lm, pairs, {}, NORMS, "all", QUICK)
    with pytest.raises(FitError, match="wrote no pairs"):
        train_directions(lm, [], start, NORMS, "all", QUICK)


TRAINED = FitConfig(
    n_queries=6,
    pairs=PairConfig(insight_tokens=8, answer_tokens=12),
    method="trained",
    training=TrainConfig(epochs=2, strength=0.1),
)


@pytest.fixture(scope="module")
def trained_pack(tiny_llama):
    mean = fit_axis(tiny_llama, preset("cheerful"), config=replace(TRAINED, method="mean"))
    return mean, fit_axis(tiny_llama, preset("cheerful"), config=TRAINED)


def test_a_trained_fit_replaces_the_band_directions_and_keeps_the_rest(trained_pack, tiny_llama):
    mean, trained = trained_pack
    assert trained.training is not None and mean.training is None
    band = set(trained.training.layers)
    steered = fit_settings(preset("cheerful"), TRAINED, SteerSettings()).band_layers(3)
    assert band and band <= set(steered)
    for i, (a, b) in enumerate(zip(mean.layers, trained.layers, strict=True)):
        assert torch.equal(a.basis, b.basis)
        if i not in band:
            assert torch.equal(a.mean_difference, b.mean_difference)
        assert b.mean_difference.norm() == pytest.approx(float(a.mean_difference.norm()), rel=1e-5)
    assert trained.fit_config["method"] == "trained"
    assert trained.fit_config["training"]["epochs"] == 2
    assert "method" not in mean.fit_config and "training" not in mean.fit_config
    assert "training" in trained.timings and trained.calibration is not None


def test_a_trained_pack_round_trips_and_exports_its_trained_vectors(trained_pack, tmp_path):
    _, trained = trained_pack
    loaded = AxisPack.load(trained.save(tmp_path / "t.safetensors"))
    assert loaded.training == trained.training
    for a, b in zip(loaded.layers, trained.layers, strict=True):
        assert torch.equal(a.mean_difference, b.mean_difference)
    vectors = control_vectors(loaded, 1.0)
    for layer, vector in vectors.items():
        unit = loaded.layers[layer].mean_difference / loaded.layers[layer].mean_difference.norm()
        assert torch.allclose(vector / vector.norm(), unit, atol=1e-5)


def test_a_trained_fit_with_a_rule_that_ignores_its_vector_is_refused(tiny_llama):
    with pytest.raises(FitError, match="trains the vector the mean_diff rule adds"):
        fit_axis(
            tiny_llama,
            preset("cheerful"),
            config=TRAINED,
            settings=SteerSettings(rule="subspace"),
        )


def test_cancelling_a_trained_fit_leaves_no_pack(tiny_llama):
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "training":
            cancel.set()

    with pytest.raises(FitCancelled):
        fit_axis(tiny_llama, preset("cheerful"), config=TRAINED, progress=progress, cancel=cancel)
    assert all(not block._forward_hooks for block in tiny_llama.layout.blocks)


def test_refining_a_fitted_pack_is_a_trained_fit_and_leaves_the_pack_alone(
    trained_pack, tiny_llama
):
    mean, trained = trained_pack
    before = [layer.mean_difference.clone() for layer in mean.layers]
    refined = refine_axis(tiny_llama, mean, TRAINED.training)
    assert all(torch.equal(a.mean_difference, b) for a, b in zip(mean.layers, before, strict=True))
    assert mean.training is None and "training" not in mean.fit_config
    for a, b in zip(refined.layers, trained.layers, strict=True):
        assert torch.equal(a.mean_difference, b.mean_difference)
    assert refined.training is not None and trained.training is not None
    assert refined.training.held_out_losses == trained.training.held_out_losses
    assert refined.calibration is not None and trained.calibration is not None
    assert refined.calibration.points == trained.calibration.points
    assert refined.fit_config["method"] == "trained" and "fingerprint" not in refined.fit_config


def test_refining_without_recalibrating_keeps_the_push_and_learns_beside_another_axis(
    trained_pack, tiny_llama
):
    """`recalibrate=False` keeps the pack's calibration; inside `steer()` of another axis the
    training forwards carry that axis's edit (its losses differ from training alone), and the
    hooks of both are gone afterwards."""
    mean, _ = trained_pack
    alone = refine_axis(tiny_llama, mean, TRAINED.training, recalibrate=False)
    assert alone.training is not None and alone.training.best_epoch > 0
    assert alone.calibration == mean.calibration
    other = fit_axis(
        tiny_llama, preset("simple"), config=replace(TRAINED, method="mean", n_queries=4)
    )
    with steer(tiny_llama, {other: 1.0}):
        beside = refine_axis(tiny_llama, mean, TRAINED.training, recalibrate=False)
    assert beside.training is not None
    assert beside.training.held_out_losses != alone.training.held_out_losses
    assert all(not block._forward_hooks for block in tiny_llama.layout.blocks)


def test_refining_is_refused_where_there_is_nothing_to_train(trained_pack, tiny_llama):
    mean, trained = trained_pack
    with pytest.raises(FitError, match="is already trained"):
        refine_axis(tiny_llama, trained)
    with pytest.raises(FitError, match="no self-generated pairs"):
        refine_axis(tiny_llama, replace(mean, pairs=[]))


def test_where_no_epoch_beats_the_mean_difference_the_pack_keeps_it_exactly(
    trained_pack, tiny_llama, monkeypatch
):
    import alignez_core.fitting.fit as fit_module

    mean, _ = trained_pack
    real = fit_module.train_directions

    def no_better(*args, **kwargs):
        directions, log = real(*args, **kwargs)
        # a log that says epoch 0 (the mean difference) had the lowest held-out loss
        return {i: -d for i, d in directions.items()}, replace(log, best_epoch=0)

    monkeypatch.setattr(fit_module, "train_directions", no_better)
    refined = refine_axis(tiny_llama, mean, TRAINED.training)
    for a, b in zip(mean.layers, refined.layers, strict=True):
        assert torch.equal(a.mean_difference, b.mean_difference)
    assert refined.calibration == mean.calibration and refined.training is not None
    assert refined.training.best_epoch == 0
