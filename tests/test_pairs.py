import threading
from dataclasses import replace

import pytest
import torch

from alignez_core.axes.axis import Axis, preset
from alignez_core.errors import FitCancelled, FitError
from alignez_core.fitting.pairs import (
    PairConfig,
    answer_prompt,
    contrast_scores,
    generate_pairs,
    insight_prompt,
)
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


def test_contrast_pairs_each_query_by_the_models_own_scores(tiny_llama):
    """One pair per query: of every answer written for it (both poles, every sample, the same
    seeds as `each`), the one the model scores most like the positive pole and the least."""
    axis, queries = preset("cheerful"), ["a?", "b?", "c?"]
    asked = PairConfig(answer_tokens=8, samples_per_pole=3, ask="persona", temperature=1.5)
    seen = []
    chosen = generate_pairs(
        tiny_llama, axis, queries, replace(asked, select="contrast"), lambda *a: seen.append(a)
    )
    every = generate_pairs(tiny_llama, axis, queries, asked)
    assert [p.query for p in chosen] == queries
    assert {s for s, _, _ in seen} == {"answers", "contrast"} and seen[-1] == ("contrast", 3, 3)
    for pair in chosen:
        texts = sorted(
            {t for p in every if p.query == pair.query for t in (p.positive, p.negative)}
        )
        assert len(texts) >= 2 and pair.positive != pair.negative
        scores = dict(zip(texts, contrast_scores(tiny_llama, axis, pair.query, texts), strict=True))
        assert scores[pair.positive] == max(scores.values())
        assert scores[pair.negative] == min(scores.values())
        assert pair.positive_insight == pair.negative_insight == ""  # asked by persona: none


def test_contrast_scores_flip_with_the_poles(tiny_llama):
    axis = preset("cheerful")
    flipped = Axis("gloomy", axis.negative, axis.positive, axis.negative_description,
                   axis.positive_description)  # fmt: skip
    answers = ["one two three", "four five"]
    forward = contrast_scores(tiny_llama, axis, "q?", answers)
    backward = contrast_scores(tiny_llama, flipped, "q?", answers)
    assert forward == pytest.approx([-s for s in backward], abs=1e-5)
    assert any(abs(s) > 1e-4 for s in forward)  # the two prompts differ, so the scores do


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ask": "shout"}, "ask must be one of insight, persona"),
        ({"select": "best"}, "select must be one of each, contrast"),
        ({"samples_per_pole": 9}, "samples_per_pole must be 1–8"),
    ],
)
def test_pair_config_refuses_unknown_choices(changes, message):
    with pytest.raises(FitError, match=message):
        PairConfig(**changes)
