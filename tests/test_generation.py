import itertools
from dataclasses import replace

import pytest
import torch

from alignez_core import AlignEZError, SamplingConfig
from alignez_core.engine import Edit, LayerEdit, Row, generate_grid, generate_rows, stream_rows
from alignez_core.engine.generation import LoopGuard
from tests.profiling import ops_per_forward

# plain greedy, so it can be compared with transformers' own generate
GREEDY = SamplingConfig(max_new_tokens=20, min_new_tokens=20, loop_guard=0)


def edit_at(lm, strength: float, layer: int = 1) -> Edit:
    direction = torch.linspace(-1, 1, lm.hidden_size)
    return Edit((LayerEdit(layer, direction / direction.norm(), strength, "scaled_add"),))


def plain_generate(lm, prompt: str, config: SamplingConfig) -> tuple[int, ...]:
    enc = lm.encode(lm.format_prompt(prompt), return_tensors="pt")
    out = lm.model.generate(
        **enc,
        max_new_tokens=config.max_new_tokens,
        min_new_tokens=config.min_new_tokens,
        do_sample=False,
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    return tuple(out[0, enc["input_ids"].shape[1] :].tolist())


def test_zero_edit_reproduces_plain_generate(tiny_any):
    ours = generate_rows(tiny_any, [Row("tell me a story", edit_at(tiny_any, 0.0))], GREEDY)
    assert ours[0].token_ids == plain_generate(tiny_any, "tell me a story", GREEDY)


def test_nonzero_edit_changes_the_tokens(tiny_any):
    base, edited = generate_rows(
        tiny_any, [Row("tell me a story"), Row("tell me a story", edit_at(tiny_any, 4.0))], GREEDY
    )
    assert base.token_ids != edited.token_ids


def test_each_batched_row_matches_running_it_alone(tiny_llama):
    rows = [
        Row("short"),
        Row("a much longer prompt than the first one", edit_at(tiny_llama, 2.0)),
        Row("short", edit_at(tiny_llama, -2.0, layer=2)),
    ]
    batched = generate_rows(tiny_llama, rows, GREEDY)
    alone = [generate_rows(tiny_llama, [row], GREEDY)[0] for row in rows]
    assert [b.token_ids for b in batched] == [a.token_ids for a in alone]


def test_sampling_uses_the_same_seed_per_row(tiny_llama):
    sampled = SamplingConfig(max_new_tokens=16, min_new_tokens=16, temperature=1.0, seed=7)
    batch = generate_rows(tiny_llama, [Row("hi"), Row("hi", edit_at(tiny_llama, 3.0))], sampled)
    alone = generate_rows(tiny_llama, [Row("hi")], sampled)
    assert batch[0].token_ids == alone[0].token_ids
    other_seed = SamplingConfig(max_new_tokens=16, min_new_tokens=16, temperature=1.0, seed=8)
    assert generate_rows(tiny_llama, [Row("hi")], other_seed)[0].token_ids != alone[0].token_ids


def test_generate_returns_prompts_by_edits(tiny_llama):
    out = generate_grid(tiny_llama, ["a", "b"], [None, edit_at(tiny_llama, 3.0)], GREEDY)
    assert len(out) == 2 and all(len(row) == 2 for row in out)
    assert out[0][0] != out[0][1]


def test_stream_grows_and_ends_with_the_batched_result(tiny_llama):
    rows = [Row("stream me"), Row("stream me", edit_at(tiny_llama, 3.0))]
    snapshots = list(stream_rows(tiny_llama, rows, GREEDY))
    assert len(snapshots) == GREEDY.max_new_tokens
    assert all(len(a[0]) <= len(b[0]) for a, b in itertools.pairwise(snapshots))
    final = generate_rows(tiny_llama, rows, GREEDY)
    assert snapshots[-1] == [o.text for o in final]


def test_closing_a_stream_early_stops_generation_and_removes_hooks(tiny_llama):
    rows = [Row("stream me", edit_at(tiny_llama, 3.0))]
    stream = stream_rows(tiny_llama, rows, SamplingConfig(max_new_tokens=200, min_new_tokens=200))
    next(stream)
    stream.close()
    assert tiny_llama.hooks.installed == 0


def test_all_positions_edit_differs_from_last_position(tiny_llama):
    last = edit_at(tiny_llama, 2.0)
    every = Edit(last.layer_edits, positions="all")
    a, b = generate_rows(tiny_llama, [Row("some prompt", last), Row("some prompt", every)], GREEDY)
    assert a.token_ids != b.token_ids


def test_an_edited_layer_costs_at_most_three_tensor_ops_per_forward(tiny_llama):
    """Decoding on a GPU is bound by kernel launches: the edit must add almost none per token."""
    layers = (0, 2)
    both = edit_at(tiny_llama, 1.0, layers[0]) + edit_at(tiny_llama, 1.0, layers[1])

    def run(row: Row):
        return lambda n: generate_rows(tiny_llama, [row], SamplingConfig(n, min_new_tokens=n))

    extra = ops_per_forward(run(Row("hello", both))) - ops_per_forward(run(Row("hello")))
    assert 0 < extra <= 3 * len(layers)


def test_traces_follow_the_site_an_axis_was_read_at(tiny_llama):
    """The projection plot projects traced states on an axis's directions: same site, same space."""
    from alignez_core.engine.generation import stream_rows
    from tests.test_activations import manual_outputs

    config = SamplingConfig(max_new_tokens=3)
    prompt = "hello"
    seen = {}
    for site in ("residual", "mlp"):
        traces = {1: []}
        for _ in stream_rows(tiny_llama, [Row(prompt)], config, traces, site):
            pass
        seen[site] = traces[1][0][0]  # the prompt's forward, row 0, last position
        expected = manual_outputs(tiny_llama, tiny_llama.format_prompt(prompt), site)[1, -1]
        assert torch.allclose(seen[site], expected, atol=1e-4)
    assert not torch.allclose(seen["residual"], seen["mlp"])


def _repeated_span(tokens: tuple[int, ...], size: int) -> int | None:
    """The end of the first span of `size` tokens that repeats an earlier one, else None."""
    seen = set()
    for end in range(size, len(tokens) + 1):
        span = tokens[end - size : end]
        if span in seen:
            return end
        seen.add(span)
    return None


def test_loop_guard_stops_verbatim_repeats_and_changes_nothing_before(tiny_llama):
    def answer(guard: int) -> tuple[int, ...]:
        config = SamplingConfig(max_new_tokens=64, min_new_tokens=64, loop_guard=guard)
        return generate_rows(tiny_llama, [Row("hello")], config)[0].token_ids

    free, guarded = answer(0), answer(4)
    first_repeat = _repeated_span(free, 4)
    assert first_repeat is not None  # a random tiny model loops when left alone
    assert _repeated_span(guarded, 4) is None
    assert guarded[: first_repeat - 1] == free[: first_repeat - 1]
    assert guarded[first_repeat - 1] != free[first_repeat - 1]


def test_loop_guard_lets_an_answer_quote_its_prompt():
    guard = LoopGuard(3, prompt_length=3)
    prompt = [5, 6, 7]
    scores = guard(torch.tensor([prompt]), torch.zeros(1, 10))
    for token in (5, 6):  # the answer restates the prompt: nothing banned
        prompt.append(token)
        scores = guard(torch.tensor([prompt]), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()
    for token in (7, 5, 6):  # "5 6 7 5 6": the answer's own "5 6 7" may not come again
        prompt.append(token)
        scores = guard(torch.tensor([prompt]), torch.zeros(1, 10))
    assert torch.isinf(scores[0, 7]) and torch.isfinite(scores[0, :7]).all()


@pytest.mark.parametrize("size", [1, -3, 65])
def test_loop_guard_out_of_range_is_refused(size):
    with pytest.raises(AlignEZError, match="loop_guard must be 0"):
        SamplingConfig(loop_guard=size)


def test_repetition_penalty_decodes_as_transformers_does(tiny_llama):
    """`SamplingConfig.repetition_penalty` is transformers' own: the same tokens as its generate
    with the same penalty, and not the tokens of no penalty."""
    config = SamplingConfig(max_new_tokens=24, min_new_tokens=24, loop_guard=0)
    penalised = replace(config, repetition_penalty=1.8)
    (plain,) = generate_rows(tiny_llama, [Row("hello")], config)
    (ours,) = generate_rows(tiny_llama, [Row("hello")], penalised)
    enc = tiny_llama.encode(tiny_llama.format_prompt("hello"), return_tensors="pt")
    out = tiny_llama.model.generate(
        **enc, max_new_tokens=24, min_new_tokens=24, do_sample=False, repetition_penalty=1.8,
        pad_token_id=tiny_llama.tokenizer.pad_token_id,
    )  # fmt: skip
    assert ours.token_ids == tuple(out[0, enc["input_ids"].shape[1] :].tolist())
    assert ours.token_ids != plain.token_ids
    with pytest.raises(AlignEZError, match="repetition_penalty must be in"):
        SamplingConfig(repetition_penalty=3.0)
