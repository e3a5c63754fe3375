"""The pre-fitted packs in assets/packs: one per preset, made with today's defaults on the
embedded model, and refused for any other model with a message that says what to do."""

import json

import pytest

from alignez_core.axes.axis import preset, preset_names
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_names, prefitted_pack, prefitted_path
from alignez_core.engine.catalog import NAMED_MODELS
from alignez_core.engine.model import DEFAULT_MODEL_NAME
from alignez_core.errors import PackError
from alignez_core.fitting.fingerprint import ModelIdentity, fit_fingerprint
from alignez_core.fitting.fit import FitConfig, fit_queries, fit_settings
from alignez_core.steering import SteerSettings
from tests.test_cli import run_cli

# every named model that ships packs, and each of its presets
SHIPPED = [m for m in NAMED_MODELS.values() if prefitted_names(m.model_id)]
SHIPPED_PACKS = [(m, name) for m in SHIPPED for name in preset_names()]


def test_every_preset_ships_a_pack_for_each_model_that_ships_any():
    assert prefitted_names() == sorted(preset_names())
    assert [m.name for m in SHIPPED] == ["smollm2-135m", "gemma3-270m"]
    for model in SHIPPED:
        assert prefitted_names(model.model_id) == sorted(preset_names())


@pytest.mark.parametrize(("model", "name"), SHIPPED_PACKS, ids=lambda v: getattr(v, "name", v))
def test_a_shipped_pack_is_the_default_fit_of_its_preset_on_its_model(model, name):
    """Stale packs fail here: a changed default or preset means `make packs` is due."""
    pack = AxisPack.load(prefitted_path(name, model.model_id))
    assert pack.axis == preset(name)
    assert pack.model_id == model.model_id
    if model.model_id == DEFAULT_MODEL_NAME:
        assert (pack.hidden_size, pack.num_layers) == (576, 30)
    config = FitConfig.for_kind(model.kind)
    defaults = json.loads(json.dumps(config.record()))
    assert {k: v for k, v in pack.fit_config.items() if k != "fingerprint"} == defaults | {
        "queries": config.n_queries
    }
    # Every input of the fit as today's code would run it: prompt templates, seed queries,
    # settings, calibration grid, decoding defaults, model identity (fingerprint.py).
    axis = preset(name)
    identity = ModelIdentity(model.model_id, pack.hidden_size, pack.num_layers)
    settings = fit_settings(axis, config, SteerSettings())
    today = fit_fingerprint(identity, axis, fit_queries(None, config), config, settings)
    assert pack.fit_config["fingerprint"] == today, "stale: run `make packs`"
    assert pack.calibration is not None
    # a chat model pairs every query; a base model's contrast skips one with a single answer
    pairs = len(pack.pairs)
    assert pairs == config.n_queries if model.kind == "chat" else pairs >= config.n_queries - 2
    assert sum(rank > 0 for rank in pack.ranks()) >= pack.num_layers // 2


def test_a_shipped_pack_is_refused_for_another_model(tiny_llama):
    with pytest.raises(PackError, match=f"fitted on {DEFAULT_MODEL_NAME}, and the loaded model"):
        prefitted_pack("cheerful", tiny_llama)


def test_a_named_models_pack_comes_from_its_own_folder(tiny_llama):
    from alignez_core.engine.model import LoadedModel

    as_gemma = LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, "gemma-3-270m")
    with pytest.raises(PackError, match="made for gemma-3-270m .hidden size 640, 18 layers"):
        prefitted_pack("cheerful", as_gemma)
    with pytest.raises(PackError, match="No pre-fitted pack for 'nope' on gemma-3-270m"):
        prefitted_path("nope", "gemma-3-270m")
    assert prefitted_names("some/other-model") == []


@pytest.mark.parametrize("name", ["nope", "../presets", ""])
def test_an_unknown_name_lists_what_ships(name):
    with pytest.raises(PackError, match=r"No pre-fitted pack for .*shipped: cheerful"):
        prefitted_pack(name)


def test_the_cli_takes_a_preset_name_where_a_pack_path_goes(tmp_path):
    info = run_cli("info", "simple")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["axis"]["positive"] == "simple"
    missing = run_cli("info", str(tmp_path / "nope.safetensors"))
    assert missing.returncode != 0 and "Cannot read axis pack" in missing.stderr
