"""`steer()` (alignez_core/steering/context.py): a pack edits the caller's own `generate`."""

import threading

import pytest
import torch

import alignez_core as az
from alignez_core.axes.axis import preset
from alignez_core.engine.generation import SamplingConfig
from alignez_core.fitting.fit import FitConfig, fit_axis
from alignez_core.fitting.pairs import PairConfig
from tests.tiny import make_model

TOKENS = 12
CAA = az.SteerSettings(rule="mean_diff")
PROMPTS = ["Tell me about the sea.", "hi"]


def own_generate(lm, prompt, tokens=TOKENS, **kwargs):
    """`transformers`' greedy generate on the model itself, as a user would call it."""
    text = lm.format_prompt(prompt)
    encoded = lm.encode(text, return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(
            **encoded,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=lm.tokenizer.pad_token_id,
            **kwargs,
        )
    return lm.tokenizer.decode(out[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)


def engine_edited(lm, prompt, axes, settings=CAA, tokens=TOKENS, loop_guard=0):
    sampling = SamplingConfig(tokens, loop_guard=loop_guard)
    return az.generate(lm, [prompt], axes, settings, sampling)[0]


def enter(model, axes, settings=None) -> None:
    with az.steer(model, axes, settings):
        pass


def hooks_on(lm) -> int:
    blocks = (*lm.layout.blocks, *lm.layout.mlps)
    return sum(len(module._forward_hooks) for module in blocks)


@pytest.fixture(scope="module")
def gloomy_pack(tiny_llama):
    pairs = PairConfig(insight_tokens=8, answer_tokens=12)
    config = FitConfig(n_queries=4, pooling="last", readout="answers", pairs=pairs)
    return fit_axis(tiny_llama, preset("simple"), config=config)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_own_generate_inside_steer_equals_the_engines_edited_row(tiny_llama, tiny_pack, prompt):
    answer = engine_edited(tiny_llama, prompt, {tiny_pack: -8.0})
    assert answer.edited != answer.base  # the edit must show, or equality proves nothing
    with az.steer(tiny_llama.model, {tiny_pack: -8.0}, CAA):
        assert own_generate(tiny_llama, prompt) == answer.edited
    assert own_generate(tiny_llama, prompt) == answer.base  # after the block: the base model
    assert hooks_on(tiny_llama) == 0


def test_a_loaded_model_and_its_transformers_model_steer_alike(tiny_llama, tiny_pack):
    with az.steer(tiny_llama, {tiny_pack: 8.0}, CAA):
        via_loaded = own_generate(tiny_llama, "hi")
    with az.steer(tiny_llama.model, {tiny_pack: 8.0}, CAA):
        assert own_generate(tiny_llama, "hi") == via_loaded
    assert via_loaded == engine_edited(tiny_llama, "hi", {tiny_pack: 8.0}).edited


def test_two_packs_at_once_equal_the_engines_two_axis_row(tiny_llama, tiny_pack, gloomy_pack):
    axes = {tiny_pack: 6.0, gloomy_pack: -6.0}
    answer = engine_edited(tiny_llama, "hi", axes)
    alone = engine_edited(tiny_llama, "hi", {tiny_pack: 6.0})
    assert answer.edited not in (answer.base, alone.edited)
    with az.steer(tiny_llama.model, axes, CAA):
        assert own_generate(tiny_llama, "hi") == answer.edited


def test_nested_blocks_add_their_edits(tiny_llama, tiny_pack):
    with az.steer(tiny_llama.model, {tiny_pack: 4.0}, CAA):
        with az.steer(tiny_llama.model, {tiny_pack: 4.0}, CAA):
            doubled = own_generate(tiny_llama, "hi")
        single = own_generate(tiny_llama, "hi")
    assert doubled != single


def test_an_exception_inside_the_block_leaves_no_hook(tiny_llama, tiny_pack):
    with pytest.raises(RuntimeError, match="boom"), az.steer(tiny_llama.model, {tiny_pack: 8.0}):
        assert hooks_on(tiny_llama) > 0
        raise RuntimeError("boom")
    assert hooks_on(tiny_llama) == 0
    assert own_generate(tiny_llama, "hi") == engine_edited(tiny_llama, "hi", {}).base


def test_threads_steer_the_same_model_without_seeing_each_other(tiny_llama, tiny_pack):
    strengths = (-8.0, 8.0, 0.0)
    solo = {s: engine_edited(tiny_llama, PROMPTS[0], {tiny_pack: s}).edited for s in strengths}
    assert len(set(solo.values())) == 3
    barrier = threading.Barrier(len(strengths) + 1)
    results: dict[str, list[str]] = {}

    def user(strength: float) -> None:
        barrier.wait()
        with az.steer(tiny_llama.model, {tiny_pack: strength}, CAA):
            results[str(strength)] = [own_generate(tiny_llama, PROMPTS[0]) for _ in range(3)]

    def engine() -> None:  # the engine's own batched generation, base rows, meanwhile
        barrier.wait()
        results["engine"] = [engine_edited(tiny_llama, PROMPTS[0], {}).base for _ in range(3)]

    threads = [threading.Thread(target=user, args=(s,)) for s in strengths]
    threads.append(threading.Thread(target=engine))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for strength in strengths:
        assert results[str(strength)] == [solo[strength]] * 3
    assert results["engine"] == [solo[0.0]] * 3
    assert hooks_on(tiny_llama) == 0


def test_the_engine_inside_a_steer_block_is_not_steered_by_it(tiny_llama, tiny_pack):
    base = engine_edited(tiny_llama, "hi", {}).base
    with az.steer(tiny_llama.model, {tiny_pack: 8.0}, CAA):
        assert engine_edited(tiny_llama, "hi", {}).base == base


def test_loop_guard_processor_decodes_as_the_engine_does(tiny_llama, tiny_pack):
    tokens = 40  # long enough for the tiny model to loop
    guarded = engine_edited(tiny_llama, "hi", {tiny_pack: 8.0}, tokens=tokens, loop_guard=4)
    unguarded = engine_edited(tiny_llama, "hi", {tiny_pack: 8.0}, tokens=tokens)
    assert guarded.edited != unguarded.edited  # the guard acts on this answer
    with az.steer(tiny_llama.model, {tiny_pack: 8.0}, CAA):
        own = own_generate(tiny_llama, "hi", tokens, logits_processor=[az.loop_guard(4)])
    assert own == guarded.edited


def test_prompt_dependent_settings_are_refused_with_a_reason(tiny_llama, tiny_pack):
    with pytest.raises(az.EditError, match="each prompt's own subspace"):
        enter(tiny_llama.model, {tiny_pack: 1.0}, az.SteerSettings(rule="project"))
    with pytest.raises(az.EditError, match="top_n ranks layers per prompt"):
        enter(tiny_llama.model, {tiny_pack: 1.0}, az.SteerSettings(top_n=2))
    assert hooks_on(tiny_llama) == 0


def test_the_steer_rule_travels_as_its_prompt_free_mean_difference(tiny_llama, tiny_pack):
    with az.steer(tiny_llama.model, {tiny_pack: 8.0}, az.SteerSettings(rule="subspace")):
        as_steer = own_generate(tiny_llama, "hi")
    with az.steer(tiny_llama.model, {tiny_pack: 8.0}, CAA):
        assert own_generate(tiny_llama, "hi") == as_steer


def test_a_pack_for_another_model_is_refused(tiny_pack):
    wider = make_model(hidden=96)
    with pytest.raises(az.PackError, match="hidden size"):
        enter(wider.model, {tiny_pack: 1.0})
    with pytest.raises(az.EditError, match="strength"):
        enter(make_model().model, {tiny_pack: float("nan")})
    with pytest.raises(az.EditError, match="LoadedModel or a transformers model"):
        enter("gpt2", {tiny_pack: 1.0})  # type: ignore[arg-type]


@pytest.mark.real_model
@pytest.mark.parametrize("prompt", ["Describe a rainy afternoon.", "What makes a good friend?"])
def test_the_shipped_cheerful_pack_steers_transformers_generate(real_lm, prompt):
    pack = az.prefitted_pack("cheerful", real_lm)
    answer = engine_edited(real_lm, prompt, {pack: -1.0}, az.SteerSettings(), tokens=24)
    assert answer.edited != answer.base
    with az.steer(real_lm.model, {pack: -1.0}):
        assert own_generate(real_lm, prompt, 24) == answer.edited
        guarded = own_generate(real_lm, prompt, 24, logits_processor=[az.loop_guard()])
    default = az.generate(real_lm, [prompt], {pack: -1.0}, sampling=SamplingConfig(24))[0]
    assert guarded == default.edited
    assert own_generate(real_lm, prompt, 24) == answer.base


def test_a_refusal_names_the_model_it_was_given(tiny_pack):
    wider = make_model(hidden=96).model
    with pytest.raises(az.PackError, match="the loaded model LlamaForCausalLM has hidden size 96"):
        enter(wider, {tiny_pack: 1.0})
    wider.config._name_or_path = "my/own-model"
    with pytest.raises(az.PackError, match="the loaded model my/own-model has hidden size 96"):
        enter(wider, {tiny_pack: 1.0})


def test_every_row_of_the_callers_batch_is_edited(tiny_llama, tiny_pack):
    """A batch of the caller's own: each row gets the edit, as if it ran alone."""
    prompts = ["Tell me about the sea.", "Tell me of a grey sky."]  # same length in tokens
    texts = [tiny_llama.format_prompt(p) for p in prompts]
    encoded = tiny_llama.encode(texts, return_tensors="pt")
    assert encoded["input_ids"].shape[1] == len(tiny_llama.encode(texts[0])["input_ids"])
    with az.steer(tiny_llama.model, {tiny_pack: -8.0}, CAA), torch.inference_mode():
        out = tiny_llama.model.generate(
            **encoded, max_new_tokens=TOKENS, do_sample=False,
            pad_token_id=tiny_llama.tokenizer.pad_token_id,
        )  # fmt: skip
    start = encoded["input_ids"].shape[1]
    together = [tiny_llama.tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]
    assert together == [engine_edited(tiny_llama, p, {tiny_pack: -8.0}).edited for p in prompts]
