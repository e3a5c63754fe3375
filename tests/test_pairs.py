import threading

import pytest
import torch

from alignez_core.axes.axis import preset
from alignez_core.errors import FitCancelled, FitError
from alignez_core.fitting.pairs import PairConfig, answer_prompt, generate_pairs, insight_prompt
from tests.tiny import make_model

SMALL = PairConfig(insight_tokens=6, answer_tokens=8)


def test_prompts_follow_the_method_templates():
    axis = preset("helpful")
    assert insight_prompt(axis, "Q?", True) == (
        "Q?\nYou are a helpful assistant. Your answer to this query should: "
    )
    assert insight_prompt(axis, "Q?", False) == (
        "Q?\nPretend you are a useless assistant. Your response to this query should: "
    )
    assert answer_prompt(axis, "Q?", False, "be short.") == (
        "Pretend you are a useless assistant. Your answer should be short.\nQ?"
    )


def test_pairs_for_every_query_and_sample_with_progress(tiny_llama):
    seen = []
    config = PairConfig(insight_tokens=6, answer_tokens=8, samples_per_pole=2, batch_size=4)
    pairs = generate_pairs(
        tiny_llama, preset("cheerful"), ["a?", "b?", "c?"], config, lambda *a: seen.append(a)
    )
    assert [(p.query, p.sample) for p in pairs] == [
        (q, s) for q in ("a?", "b?", "c?") for s in (0, 1)
    ]
    assert all(p.positive and p.negative for p in pairs)
    assert {s for s, _, _ in seen} == {"insights", "answers"}
    assert seen[-1] == ("answers", 12, 12)


def test_cancel_stops_the_fit(tiny_llama):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FitCancelled):
        generate_pairs(tiny_llama, preset("cheerful"), ["a?"], SMALL, cancel=cancel)


def test_a_model_that_only_says_eos_gives_a_clear_error():
    mute = make_model(seed=3)
    with torch.no_grad():
        mute.model.lm_head.weight.zero_()
        mute.model.lm_head.bias = None
        mute.model.lm_head.weight[mute.tokenizer.eos_token_id].fill_(1.0)
        mute.model.model.norm.weight.fill_(1.0)
    with pytest.raises(FitError, match="no usable answer pairs for cheerful ↔ gloomy"):
        generate_pairs(mute, preset("cheerful"), ["a?", "b?"], SMALL)


def test_no_queries_is_refused(tiny_llama):
    with pytest.raises(FitError, match="No queries"):
        generate_pairs(tiny_llama, preset("cheerful"), ["  ", ""], SMALL)
