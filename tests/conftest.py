from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["HF_HUB_OFFLINE"] = "1"  # always: no test may reach a hub, whatever the shell says
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.tiny import make_model


@pytest.fixture(scope="session")
def tiny_llama():
    return make_model("llama")


@pytest.fixture(scope="session", params=["llama", "qwen2", "gemma"])
def tiny_any(request):
    return make_model(request.param)


@pytest.fixture(scope="session")
def second_pack(tiny_llama):
    """A concise ↔ verbose axis on the tiny Llama, persona readout: a second axis to combine."""
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis

    return fit_axis(tiny_llama, preset("concise"), ["a?", "b?", "c?", "d?"],
                    FitConfig(n_queries=4, pooling="last"))  # fmt: skip


@pytest.fixture(scope="session")
def real_lm():
    from alignez_core import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_pack(tiny_llama):
    """A cheerful ↔ gloomy axis fitted on the tiny Llama (random weights, real pipeline), read
    on the self-generated answers (AlignEZ's subspace path; `test_fit.py` covers the persona
    readout)."""
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis
    from alignez_core.fitting.pairs import PairConfig

    # Random weights make mean-pooled answers alike (cos > 0.8); the last token differs.
    pairs = PairConfig(insight_tokens=8, answer_tokens=12)
    config = FitConfig(n_queries=6, pooling="last", readout="answers", pairs=pairs)
    return fit_axis(tiny_llama, preset("cheerful"), config=config)


@pytest.fixture(scope="session")
def real_cheerful(real_lm):
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis

    return fit_axis(real_lm, preset("cheerful"), config=FitConfig(n_queries=8))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """The tiny Llama saved to a folder, for CLI runs in a subprocess."""
    folder = tmp_path_factory.mktemp("tiny-model")
    lm = make_model()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder
