"""fit_axis's readout choice: what Φ is read on, stored in the pack, refused when unknown."""

from dataclasses import dataclass, replace

import pytest
import torch

from alignez_core.axes.axis import preset
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.subspace import SubspaceConfig
from alignez_core.engine.generation import SamplingConfig
from alignez_core.errors import FitError
from alignez_core.fitting.calibrate import CalibrationConfig
from alignez_core.fitting.fit import FitConfig, fit_axis, fit_settings
from alignez_core.fitting.pairs import PairConfig, persona_prompt
from alignez_core.fitting.train import TrainConfig
from alignez_core.steering import SteerSettings, generate, plan_edits
from tests.test_activations import manual_outputs

QUERIES = ["why?", "how so?", "what now?", "where to?"]
FAST = PairConfig(insight_tokens=4, answer_tokens=6)


def test_persona_readout_is_the_block_output_at_the_persona_prompts_last_token(tiny_llama):
    axis = preset("cheerful")
    # keep every pair (random weights make the two prompts' states alike) and the raw mean
    subspace = SubspaceConfig(max_pair_cosine=1.0, center=False)
    config = FitConfig(readout="persona", pairs=FAST, subspace=subspace, calibration=None)
    pack = fit_axis(tiny_llama, axis, QUERIES, config)

    def last(positive: bool) -> torch.Tensor:  # (K, L, d), read with plain forward hooks
        return torch.stack([
            manual_outputs(tiny_llama, tiny_llama.format_prompt(persona_prompt(axis, q, positive)),
                           "residual")[:, -1]
            for q in QUERIES
        ])  # fmt: skip

    expected = (last(True) - last(False)).mean(0)
    for layer in range(tiny_llama.num_layers):
        assert torch.allclose(pack.layers[layer].mean_difference, expected[layer], atol=1e-4)
    answers = fit_axis(tiny_llama, axis, QUERIES, FitConfig(readout="answers", pairs=FAST,
                       subspace=subspace, calibration=None))  # fmt: skip
    assert not torch.allclose(answers.layers[1].mean_difference, expected[1], atol=1e-3)
    # the residual units still come from the answers, so c means the same under both readouts
    assert pack.residual_norms == pytest.approx(answers.residual_norms, rel=1e-5)


def test_the_readout_travels_in_the_pack_and_an_unknown_one_is_refused(tiny_llama, tmp_path):
    config = FitConfig(readout="persona", pairs=FAST, calibration=None)
    pack = fit_axis(tiny_llama, preset("concise"), QUERIES, config)
    loaded = AxisPack.load(pack.save(tmp_path / "p.safetensors"), tiny_llama)
    assert loaded.fit_config["readout"] == "persona"
    with pytest.raises(FitError, match="readout must be one of answers, persona"):
        FitConfig(readout="logits")


def test_a_default_fit_steers_with_its_readouts_settings_and_calibrates_with_them(tiny_llama):
    from alignez_core.fitting.calibrate import CalibrationConfig
    from alignez_core.fitting.fit import READOUT_SETTINGS
    from alignez_core.steering import SteerSettings, plan_edits

    calibration = CalibrationConfig(n_queries=2, max_new_tokens=4)
    pack = fit_axis(tiny_llama, preset("cheerful"), QUERIES, FitConfig(pairs=FAST,
                    calibration=calibration))  # fmt: skip
    own = READOUT_SETTINGS["persona"]
    assert pack.fit_config["readout"] == "persona"
    assert (pack.fitted_rule(), pack.fitted_band(), pack.fitted_positions()) == (
        own.rule, own.band, own.positions
    )  # fmt: skip
    assert pack.calibration.settings["rule"] == "mean_diff"
    assert pack.calibration.settings["positions"] == "all"
    (edits,) = plan_edits(tiny_llama, ["hello"], {pack: 1.0}, SteerSettings())
    items = edits[0].edit.layer_edits
    assert {(i.rule, i.positions) for i in items} == {("add", "all")}
    assert {i.layer for i in items} <= set(own.band_layers(tiny_llama.num_layers))


def test_an_axis_with_a_band_is_fitted_and_calibrated_on_it(tiny_llama):
    from alignez_core.fitting.calibrate import CalibrationConfig
    from alignez_core.steering import SteerSettings, plan_edits

    axis = preset("concise")
    calibration = CalibrationConfig(n_queries=2, max_new_tokens=4)
    pack = fit_axis(tiny_llama, axis, QUERIES, FitConfig(pairs=FAST, calibration=calibration))
    assert pack.fitted_band() == axis.band == tuple(pack.calibration.settings["band"])
    (edits,) = plan_edits(tiny_llama, ["hello"], {pack: 1.0}, SteerSettings())
    band = SteerSettings(band=axis.band).band_layers(tiny_llama.num_layers)
    assert {i.layer for i in edits[0].edit.layer_edits} <= set(band)
    given = fit_axis(tiny_llama, axis, QUERIES, FitConfig(pairs=FAST, calibration=None),
                     settings=SteerSettings(band=(0.0, 0.5)))  # fmt: skip
    assert given.fitted_band() == (0.0, 0.5)  # the caller's band wins over the axis's


def test_the_fingerprint_moves_with_every_input_of_a_fit(monkeypatch):
    """The shipped packs' staleness test rests on this: change any input, the hash changes."""
    from alignez_core.fitting import fingerprint as fp

    axis, config = preset("cheerful"), FitConfig()
    inputs = {
        "model": fp.ModelIdentity("m", 64, 3),
        "axis": axis,
        "queries": ["q1", "q2"],
        "config": config,
        "settings": fit_settings(axis, config, SteerSettings()),
    }

    def now(**changed):
        return fp.fit_fingerprint(**(inputs | changed))

    base = now()
    assert now() == base
    variants = [
        now(model=fp.ModelIdentity("other", 64, 3)),
        now(axis=preset("simple")),
        now(queries=["q1", "q3"]),
        now(config=FitConfig(n_queries=8)),
        now(config=FitConfig(calibration=CalibrationConfig(grid=(0.01, 0.02)))),
        now(config=FitConfig(method="trained")),
        now(config=FitConfig(method="trained", training=TrainConfig(epochs=2))),
        now(settings=SteerSettings(rule="subspace", band=(0.3, 0.7), positions="last")),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    # training settings do not act on a mean fit, so they leave its fingerprint as it was
    assert now(config=FitConfig(training=TrainConfig(epochs=2))) == base
    # keeping several axes apart never acts in a fit of one
    assert now(settings=replace(inputs["settings"], separate="symmetric")) == base
    monkeypatch.setattr(fp, "persona_prompt", lambda a, q, p: f"Be a {a.persona(p)}. {q}")
    assert now() != base  # a changed prompt template
    monkeypatch.undo()

    @dataclass(frozen=True)
    class ShorterGuard(SamplingConfig):
        loop_guard: int = 4

    monkeypatch.setattr(fp, "SamplingConfig", ShorterGuard)
    assert now() != base  # a changed decoding default


def test_a_fit_read_at_the_mlp_output_steers_at_the_mlp(tiny_llama):
    """`--site mlp` (the paper's site): directions read and edits made at each MLP's output."""
    config = FitConfig(
        n_queries=4,
        pooling="last",
        readout="answers",
        site="mlp",
        pairs=PairConfig(insight_tokens=8, answer_tokens=12),
    )
    pack = fit_axis(tiny_llama, preset("cheerful"), config=config)
    assert pack.site == "mlp" and pack.residual_norms == [] and pack.calibration is None
    fixed = SteerSettings(rule="mean_diff")  # every band layer, whatever the prompt
    (answer,) = generate(tiny_llama, ["hi"], {pack: 4.0}, fixed, SamplingConfig(12))
    assert answer.edited != answer.base
    (plans,) = plan_edits(tiny_llama, ["hi"], {pack: 4.0}, fixed)
    assert {item.site for item in plans[0].edit.layer_edits} == {"mlp"}


@pytest.mark.parametrize("kind", ["chat", "base"])
def test_a_fit_given_no_config_takes_the_defaults_of_its_models_kind(tiny_llama, kind):
    """A base model's calibration allows one looping answer in eight queries; a chat model's
    is the measured default (docs/models.md)."""
    from alignez_core.engine.model import LoadedModel

    lm = LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, "tiny", kind=kind)
    assert FitConfig.for_kind(kind, n_queries=5).n_queries == 5
    pack = fit_axis(lm, preset("cheerful"), QUERIES)
    stored = pack.fit_config["calibration"]
    assert (stored["n_queries"], stored["extra_looping"]) == ((8, 1) if kind == "base" else (3, 0))
    assert pack.calibration is not None and pack.calibration.queries == min(
        stored["n_queries"], len(QUERIES)
    )
    # a base model writes its pairs by persona, 4 samples, one pair per query by its contrast
    pairs = pack.fit_config["pairs"]
    expected = ("persona", "contrast", 4) if kind == "base" else ("insight", "each", 1)
    assert (pairs["ask"], pairs["select"], pairs["samples_per_pole"]) == expected
    # a base model reads its own answers and steers by their subspace; a chat model the persona
    # prompt with mean_diff; a trained fit trains the persona readout's mean_diff vector
    readout, rule = ("answers", "subspace") if kind == "base" else ("persona", "mean_diff")
    assert (pack.fit_config["readout"], pack.fitted_rule()) == (readout, rule)
    assert FitConfig.for_kind(kind, method="trained").readout == "persona"
    assert len(pack.pairs) == len(QUERIES) and all(p.positive != p.negative for p in pack.pairs)
