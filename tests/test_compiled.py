"""Compiled decoding (compiled.py) on a tiny model: the same tokens as eager, no recompiles when a
slider moves, eager wherever it cannot take a batch. One model compiles once for the module
(about 15 s a batch bucket on 2 cores)."""

from __future__ import annotations

import pytest
import torch

from alignez_core.engine.compiled import (
    BucketTiming,
    CompiledDecoder,
    CompileSettings,
    graphs_compiled,
)
from alignez_core.engine.edit import Edit, LayerEdit
from alignez_core.engine.generation import (
    Row,
    SamplingConfig,
    decode_batch,
    generate_rows,
    prepare_batch,
    stream_rows,
)
from alignez_core.engine.matvec import MatVecLinear, use_matvec_linears
from alignez_core.engine.warmup import choose_paths, enable_compile
from tests.tiny import make_model

PROMPT = "hello there"
GREEDY = SamplingConfig(max_new_tokens=16)


@pytest.fixture(scope="module")
def pair():
    """(eager model, compiled model): two wraps of the same weights, only one compiled."""
    eager = make_model("llama", layers=3, hidden=64)
    compiled = make_model("llama", layers=3, hidden=64)
    enable_compile(compiled, warm_batches=(2, 4), choose=False).join()
    assert compiled.compiled is not None, compiled.compile_note
    return eager, compiled


def _direction(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    v = torch.randn(64)
    return (v / v.norm())[None]


def _edit(strength: float, rule: str = "scaled_add", positions: str = "all", seed: int = 0) -> Edit:
    items = tuple(LayerEdit(i, _direction(seed), strength, rule, "residual") for i in (1, 2))
    return Edit(items, positions=positions)


def _tokens(lm, rows, config=GREEDY) -> list[tuple[int, ...]]:
    return [o.token_ids for o in generate_rows(lm, rows, config)]


def _compiled_tokens(lm, rows, config=GREEDY) -> list[tuple[int, ...]]:
    """`_tokens`, checking the compiled graph made every token: the decoder served the call
    and no decoding step ran its hook as Python (an eager fallback would pass equality)."""
    decoder = lm.compiled
    served, eager_steps = decoder.generations, decoder.eager_steps
    tokens = _tokens(lm, rows, config)
    assert decoder.generations == served + 1, "the compiled decoder did not serve this call"
    assert decoder.eager_steps == eager_steps, "decoding steps ran eagerly"
    return tokens


def _eager_tokens(lm, rows, config=GREEDY) -> list[tuple[int, ...]]:
    """`_tokens` on a call the compiled decoder must leave to the eager path."""
    served = lm.compiled.generations
    tokens = _tokens(lm, rows, config)
    assert lm.compiled.generations == served
    return tokens


def test_compiled_equals_eager_token_for_token(pair):
    eager, compiled = pair
    rows = [
        Row(PROMPT),
        Row(PROMPT, _edit(0.8)),
        Row("a longer prompt than the others", _edit(-0.8, positions="last", seed=1)),
    ]  # three rows: padded to the 4-row bucket
    expected = _tokens(eager, rows)
    assert expected[1] != expected[0]  # the edit changes the text, so equality means something
    assert _compiled_tokens(compiled, rows) == expected
    mixed = [Row(PROMPT, _edit(3.0, rule="add")), Row(PROMPT, _edit(0.8, positions="prompt"))]
    assert _compiled_tokens(compiled, mixed) == _tokens(eager, mixed)


def test_slider_moves_never_recompile(pair):
    eager, compiled = pair
    _tokens(compiled, [Row(PROMPT), Row(PROMPT, _edit(0.1))])
    before = graphs_compiled()
    seen = set()
    for strength in (-1.0, -0.5, 0.0, 0.3, 0.9, 1.5):
        rows = [Row(PROMPT), Row(PROMPT, _edit(strength, seed=2))]
        got = _compiled_tokens(compiled, rows)
        assert got == _tokens(eager, rows)
        seen.add(got[1])
    assert graphs_compiled() == before
    assert len(seen) > 1  # the slider did move the text


def test_streaming_and_sampling_go_through_the_compiled_step(pair):
    eager, compiled = pair
    rows = [Row(PROMPT), Row(PROMPT, _edit(0.8)), Row(PROMPT, _edit(-0.8))]
    served, eager_steps = compiled.compiled.generations, compiled.compiled.eager_steps
    final = list(stream_rows(compiled, rows, GREEDY))[-1]
    assert compiled.compiled.generations == served + 1
    assert compiled.compiled.eager_steps == eager_steps
    assert len(final) == 3  # the padding row never reaches the consumer
    assert final == [o.text for o in generate_rows(eager, rows, GREEDY)]
    sampled = SamplingConfig(max_new_tokens=16, temperature=0.9, seed=3)
    assert _compiled_tokens(compiled, rows, sampled) == _tokens(eager, rows, sampled)


def test_projection_rules_and_large_batches_decode_eagerly(pair):
    eager, compiled = pair
    decoder = compiled.compiled
    paper = [Row(PROMPT, _edit(0.5, rule="project"))]
    assert "project" in decoder.supports([r.edit for r in paper], 1, 8)
    assert "batch 5" in decoder.supports([None] * 5, 5, 8)
    before = graphs_compiled()
    assert _eager_tokens(compiled, paper) == _tokens(eager, paper)
    assert graphs_compiled() == before


def test_a_busy_decoder_means_eager_not_waiting(pair):
    eager, compiled = pair
    rows = [Row(PROMPT), Row(PROMPT, _edit(0.8))]
    with compiled.compiled._lock:  # another call holds the compiled tables
        assert _eager_tokens(compiled, rows) == _tokens(eager, rows)


def _path_of(lm, rows) -> str:
    """The path `decode_batch` reports for `rows` (greedy, 4 tokens)."""
    heard: list[str] = []
    prepared = prepare_batch(lm, rows, [SamplingConfig(max_new_tokens=4)] * len(rows))
    with torch.inference_mode():
        decode_batch(lm, prepared, [r.edit for r in rows], prepared["kwargs"], on_path=heard.append)
    return heard[-1]


def test_a_bucket_where_eager_measured_faster_decodes_eagerly_and_says_why(pair):
    eager, compiled = pair
    decoder = compiled.compiled
    rows = [Row(PROMPT), Row(PROMPT, _edit(0.8))]
    assert _path_of(compiled, rows) == "compiled"
    decoder.timings[2] = BucketTiming(compiled_s=0.020, eager_s=0.010)
    try:
        why = "eager measured faster for 2 rows (10 ms a token eager vs 20 compiled)"
        assert decoder.supports([r.edit for r in rows], 2, 8) == why
        assert _path_of(compiled, rows) == f"eager: {why}"
        assert _eager_tokens(compiled, rows) == _tokens(eager, rows)
        decoder.timings[2] = BucketTiming(compiled_s=0.010, eager_s=0.020)
        assert _compiled_tokens(compiled, rows) == _tokens(eager, rows)
    finally:
        decoder.timings.pop(2)


def test_choosing_times_both_paths_and_keeps_the_faster(pair):
    _, compiled = pair
    decoder = compiled.compiled
    served = decoder.generations
    try:
        choose_paths(compiled, (2, 3))  # 3 rows share the 4-row bucket
        assert set(decoder.timings) == {2, 4}
        assert decoder.generations >= served + 2 * 4  # compiled really ran: 4 timed rounds each
        for bucket, timing in decoder.timings.items():
            assert timing.compiled_s > 0 and timing.eager_s > 0
            reason = decoder.supports([None] * bucket, bucket, 8)
            assert (reason is not None) == timing.eager_faster
    finally:
        decoder.timings.clear()


def test_the_users_model_is_untouched_and_weights_are_shared(pair):
    _, compiled = pair
    clone = compiled.compiled.model
    assert clone is not compiled.model
    assert all(not m._forward_hooks for m in compiled.model.modules())
    ours = dict(compiled.model.named_parameters())
    assert all(p.data_ptr() == ours[name].data_ptr() for name, p in clone.named_parameters())
    # on CPU the clone decodes through multiply-reduce linears; the user's model keeps its own
    assert any(isinstance(m, MatVecLinear) for m in clone.modules())
    assert not any(isinstance(m, MatVecLinear) for m in compiled.model.modules())


def test_a_failing_compile_falls_back_to_eager_and_says_why(monkeypatch):
    lm = make_model("llama", layers=3, hidden=64, seed=1)
    enable_compile(lm, warm_batches=())

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(lm.compiled, "generate", broken)
    rows = [Row(PROMPT, _edit(0.8))]
    assert _tokens(lm, rows) == _tokens(make_model("llama", layers=3, hidden=64, seed=1), rows)
    assert lm.compiled is None
    assert "no C++ compiler" in lm.compile_note


def test_split_models_are_refused_with_a_reason():
    lm = make_model("llama", layers=2, hidden=64)
    lm.model.hf_device_map = {"model.layers.0": "cpu", "model.layers.1": "disk"}
    assert enable_compile(lm) is None
    assert lm.compiled is None and "split across devices" in lm.compile_note
    assert isinstance(CompiledDecoder.bucket(3), int) and CompiledDecoder.bucket(9) is None


def test_traced_streaming_matches_eager_states(pair):
    eager, compiled = pair
    rows = [Row(PROMPT), Row(PROMPT, _edit(0.8)), Row(PROMPT, _edit(-0.8))]
    got: dict[int, list[torch.Tensor]] = {1: []}
    want: dict[int, list[torch.Tensor]] = {1: []}
    before = graphs_compiled()
    texts = list(stream_rows(compiled, rows, GREEDY, got))[-1]
    assert texts == list(stream_rows(eager, rows, GREEDY, want))[-1]
    assert graphs_compiled() == before  # traced by the same graph
    assert len(got[1]) == len(want[1]) == GREEDY.max_new_tokens
    torch.testing.assert_close(torch.stack(got[1]), torch.stack(want[1]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["qwen2", "gemma"])
def test_other_architectures_decode_compiled_like_eager(arch):
    eager = make_model(arch, layers=2, hidden=64, seed=4)
    compiled = make_model(arch, layers=2, hidden=64, seed=4)
    enable_compile(compiled, warm_batches=())
    edit = Edit((LayerEdit(1, _direction(5), 0.8, "scaled_add", "residual"),), positions="all")
    mlp = Edit((LayerEdit(0, _direction(6), 2.0, "add", "mlp"),), positions="last")
    rows = [Row(PROMPT), Row(PROMPT, edit), Row(PROMPT, mlp)]
    before = graphs_compiled()
    assert _compiled_tokens(compiled, rows) == _tokens(eager, rows)
    assert graphs_compiled() > before  # it did compile: the compiled step made these tokens


@pytest.mark.parametrize("bias", [False, True])
def test_matvec_linear_equals_linear_compiled_and_eager(bias):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 40, bias=bias), torch.nn.Linear(40, 8))
    linear = model[0]
    assert use_matvec_linears(model) == 2
    assert model[0].weight is linear.weight and isinstance(model[0], MatVecLinear)
    compiled = torch.compile(model[0], dynamic=False)
    for shape in [(1, 24), (3, 1, 24), (2, 5, 24)]:  # a token, 3 rows of one token, a prompt
        x = torch.randn(shape)
        want = linear(x)
        torch.testing.assert_close(compiled(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model[0](x), want)  # eager: BLAS, exactly nn.Linear
    x = torch.randn(2, 1, 24, dtype=torch.bfloat16)
    assert compiled.to(torch.bfloat16)(x).dtype == torch.bfloat16


def test_a_cold_compile_is_paid_in_a_child_process(tmp_path, monkeypatch):
    """The serving process then compiles from the child's disk cache: no graph compiled cold
    here, and the warm-up process's time is recorded apart from this process's. The model's
    shapes are its own in this test run, so no graph compiled by another test serves it."""
    from torch._dynamo.utils import counters

    from alignez_core import load_model
    from alignez_core.engine.warmup import warm_command

    built = make_model("llama", layers=2, hidden=48, seed=9)
    built.model.save_pretrained(tmp_path / "model")
    built.tokenizer.save_pretrained(tmp_path / "model")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    lm = load_model(str(tmp_path / "model"))
    assert lm.load_spec is not None and lm.load_spec.spec == str(tmp_path / "model")
    assert "--batches" in warm_command(lm.load_spec, CompileSettings(), (2,))
    misses, hits = (counters["inductor"][k] for k in ("fxgraph_cache_miss", "fxgraph_cache_hit"))
    enable_compile(lm, warm_batches=(2,), choose=False).join()
    assert lm.compiled is not None, lm.compile_note
    assert set(lm.warmup_seconds) == {"process", "here"}
    assert counters["inductor"]["fxgraph_cache_miss"] == misses  # nothing compiled cold here
    assert counters["inductor"]["fxgraph_cache_hit"] > hits
    edit = Edit((LayerEdit(1, torch.ones(1, 48) / 48**0.5, 0.8, "scaled_add", "residual"),), "all")
    rows = [Row(PROMPT), Row(PROMPT, edit)]
    assert _compiled_tokens(lm, rows) == _tokens(built, rows)


def test_a_failing_warm_up_process_turns_compiling_off_with_its_reason(model_dir, monkeypatch):
    import alignez_core.engine.warmup
    from alignez_core import load_model

    lm = load_model(str(model_dir))
    monkeypatch.setattr(alignez_core.engine.warmup, "warm_in_child", lambda *a: "it broke (exit 1)")
    enable_compile(lm, warm_batches=(2,)).join()
    assert lm.compiled is None and lm.compile_note == "Compiled decoding is off: it broke (exit 1)"


def test_requests_never_pay_a_compile_for_a_bucket_not_warmed_up(pair):
    eager, compiled = pair  # warmed for 2 and 4 rows
    decoder = compiled.compiled
    assert decoder.warm_only and decoder.supports([None] * 2, 2, 8) is None
    assert decoder.supports([None], 1, 8) == "the 1-row step is not warmed up"
    before = graphs_compiled()
    rows = [Row(PROMPT, _edit(0.8))]
    assert _eager_tokens(compiled, rows) == _tokens(eager, rows)
    assert graphs_compiled() == before  # decoded eagerly, nothing compiled on the request
    assert not decoder.warming
    fresh = CompiledDecoder(eager.model)
    assert not fresh.warming  # no warm-up asked for: each bucket compiles on first use
    fresh.warm_only = True
    assert fresh.warming and fresh.supports([None] * 2, 2, 8) == "the 2-row step is not warmed up"
    fresh.mark_warm(2)
    assert not fresh.warming and fresh.supports([None] * 2, 2, 8) is None


def test_sliding_window_models_decode_eagerly_with_a_reason():
    """Gemma 2/3 (and any model with sliding-window layers): transformers' sliding cache
    branches on its length, so the compiled step would recompile at every token."""
    import transformers as tf

    from alignez_core import LoadedModel
    from tests.toy import byte_tokenizer

    tokenizer = byte_tokenizer()
    config = tf.Gemma3TextConfig(vocab_size=len(tokenizer), num_hidden_layers=2, hidden_size=32,
                                 intermediate_size=64, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=16)  # fmt: skip
    assert "sliding_attention" in config.layer_types
    lm = LoadedModel.wrap(tf.Gemma3ForCausalLM(config), tokenizer, "tiny-gemma3")
    assert enable_compile(lm) is None
    assert lm.compiled is None and "sliding-window attention" in lm.compile_note
    llama = make_model("llama", layers=2, hidden=64)  # no sliding layers: compiles
    enable_compile(llama, warm_batches=())
    assert llama.compiled is not None, llama.compile_note
