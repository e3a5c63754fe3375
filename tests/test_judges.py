import pytest
import torch

from alignez_core.axes.axis import ASSETS, Axis, preset
from alignez_core.axes.queries import read_queries
from alignez_core.errors import AlignEZError
from alignez_core.measure.judges import (
    anchors,
    degenerate,
    distinct_2,
    grade,
    make_judge,
    native_bf16,
    perplexities,
    refusal,
    repetition,
    tone,
    words,
)

HAPPY = "What a wonderful, sunny day! I'm so happy and excited."
SAD = "Everything is bleak and hopeless; I feel miserable and alone."


def test_tone_grade_and_words_rank_texts_as_expected():
    assert tone([HAPPY])[0] > 0.5 > -0.5 > tone([SAD])[0]
    simple = "The cat sat on the mat. It was warm."
    technical = (
        "Thermodynamic irreversibility necessitates entropy generation in dissipative systems."
    )
    assert grade([simple])[0] + 5 < grade([technical])[0]
    assert words(["one two three", ""]) == [3.0, 0.0]


def test_refusal_and_repetition_measures():
    assert refusal(["I'm sorry, but I can't help with that.", "Sure, here you go."]) == [1.0, 0.0]
    assert distinct_2(["a b c d"]) == 1.0 and distinct_2(["a b a b a b"]) == pytest.approx(0.4)
    assert repetition("the same words " * 20) > 3 * repetition("A short, varied sentence here.")


def test_a_long_answer_is_read_in_windows_so_length_alone_is_not_a_loop():
    """~300 words that never repeat a question (the tuning prompts, joined) compress like a loop
    when read whole; read in 100-word windows they do not, a loop at their end still does, and
    an answer of up to 100 words gets the whole-text verdict as before."""
    varied = " ".join(read_queries(ASSETS / "tune_prompts.txt").queries)
    assert len(varied.split()) > 250
    assert degenerate(varied, window=10**9)  # the whole-text reading flags its length
    assert not degenerate(varied)
    assert degenerate(varied + " I am here to help." * 10)  # only the last window holds it
    words_ = varied.split()
    for n in (5, 30, 60, 90):
        text = " ".join(words_[:n])
        for candidate in (text, text + " the cat" * 5, "".join(["ab "] * n)):
            assert degenerate(candidate) == degenerate(candidate, window=10**9)


def test_pole_judge_uses_written_anchors_not_fit_pairs():
    judge = make_judge("pole", preset("cheerful"))
    happy, sad = judge.score([HAPPY, SAD])
    assert happy > 0 > sad
    positive, _ = anchors(preset("cheerful"))
    assert all("cheerful" not in a for a in positive)  # written sentences, not the keyword
    custom_pos, custom_neg = anchors(Axis("x", "polite", "rude"))
    assert "polite" in custom_pos[0] and "rude" in custom_neg[0]


def test_unknown_judge_is_refused():
    with pytest.raises(AlignEZError, match="Unknown judge 'vibes'"):
        make_judge("vibes", preset("cheerful"))


def test_perplexity_is_lower_for_the_models_own_answer(tiny_llama):
    from alignez_core import SamplingConfig
    from alignez_core.engine import Row, generate_rows

    own = generate_rows(tiny_llama, [Row("hello")], SamplingConfig(16, min_new_tokens=16))[0].text
    (ppl_own, ppl_other) = perplexities(tiny_llama, ["hello", "hello"], [own, "zq xv kw pj"])
    assert ppl_own < ppl_other


def test_bf16_products_stay_close_to_float32_and_are_off_where_not_native(tiny_llama):
    prompts, answers = ["hello", "hello", "x"], ["sunny and warm", "zq xv kw pj", "a b c d e"]
    exact = perplexities(tiny_llama, prompts, answers)
    fast = perplexities(tiny_llama, prompts, answers, bf16_products=True)
    if native_bf16(tiny_llama):
        assert fast != exact  # the products really ran in bfloat16
        assert fast == pytest.approx(exact, rel=0.03)
    else:
        assert fast == exact
    assert tiny_llama.model.dtype == torch.float32  # scoring leaves the weights as they were


def test_batched_perplexity_with_a_shared_prompt_cache_equals_a_full_forward(tiny_any):
    import math

    import torch

    prompts = ["hello", "a much longer prompt about the weather", "hello", "x", "hello"]
    answers = ["sunny and warm", "rain", "", "a b c d e f g h", "hi there, friend"]
    lm = tiny_any

    def full_forward(prompt: str, answer: str) -> float:
        prefix = lm.encode(lm.format_prompt(prompt))
        ids = lm.encode(lm.format_prompt(prompt) + answer)
        start, ids = len(prefix["input_ids"]), torch.tensor([ids["input_ids"]])
        with torch.inference_mode():
            logits = lm.model(input_ids=ids).logits[0, start - 1 : -1]
        return math.exp(torch.nn.functional.cross_entropy(logits, ids[0, start:]))

    batched = perplexities(lm, prompts, answers, batch_size=2)
    assert math.isnan(batched[2])  # no answer tokens: NaN, not a number made up
    for got, prompt, answer in zip(batched, prompts, answers, strict=True):
        if answer:
            assert got == pytest.approx(full_forward(prompt, answer), rel=1e-4)
