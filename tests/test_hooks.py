"""Hooks are per call: concurrent callers see only their own edits; nothing is left behind."""

import threading

import pytest
import torch

from alignez_core import SamplingConfig
from alignez_core.engine import Edit, LayerEdit, Row, generate_rows, rules, stream_rows

CONFIG = SamplingConfig(max_new_tokens=24, min_new_tokens=24)


def push(strength: float, hidden: int = 64) -> Edit:
    direction = torch.linspace(-1, 1, hidden)
    return Edit((LayerEdit(1, direction, strength, "scaled_add"),))


def test_no_hook_remains_after_generation(tiny_llama):
    generate_rows(tiny_llama, [Row("hi", push(1.0))], CONFIG)
    assert tiny_llama.hooks.installed == 0
    assert all(not m._forward_hooks for m in tiny_llama.layout.mlps)


def test_exception_inside_generation_leaves_no_hook(tiny_llama, monkeypatch):
    def explode(hidden, directions, strength):
        raise RuntimeError("boom inside the forward pass")

    monkeypatch.setitem(rules._RULES, "test_explode", explode)

    edit = Edit((LayerEdit(0, torch.ones(64), 1.0, "test_explode"),))
    with pytest.raises(RuntimeError, match="boom"):
        generate_rows(tiny_llama, [Row("hi", edit)], CONFIG)
    assert tiny_llama.hooks.installed == 0
    with pytest.raises(RuntimeError, match="boom"):
        list(stream_rows(tiny_llama, [Row("hi", edit)], CONFIG))
    assert tiny_llama.hooks.installed == 0
    assert all(not m._forward_hooks for m in tiny_llama.layout.mlps)


def test_concurrent_threads_with_different_edits_match_sequential_runs(tiny_llama):
    """Thread B's edit is applied while thread A is paused mid-generation, and vice versa."""
    strengths = [0.0, 3.0, -3.0, 1.5]
    prompts = ["the cat", "a dog ran", "hello", "zz top"]
    sequential = [
        generate_rows(tiny_llama, [Row(p, push(s))], CONFIG)[0].token_ids
        for p, s in zip(prompts, strengths, strict=True)
    ]
    assert len(set(sequential)) == len(sequential)  # edits really change the tokens

    barrier = threading.Barrier(len(prompts))
    results: dict[int, tuple[int, ...]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                out = generate_rows(tiny_llama, [Row(prompts[i], push(strengths[i]))], CONFIG)
                assert results.setdefault(i, out[0].token_ids) == out[0].token_ids
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [results[i] for i in range(len(prompts))] == sequential
    assert tiny_llama.hooks.installed == 0


def test_interleaved_calls_do_not_leak_edits(tiny_llama, monkeypatch):
    """Deterministic interleaving: A pauses inside its forward while B runs a full generation."""
    inside_a = threading.Event()
    b_done = threading.Event()

    def pause_once(hidden, directions, strength):
        if not inside_a.is_set():
            inside_a.set()
            assert b_done.wait(timeout=60)
        return hidden + strength * directions.sum(0)

    monkeypatch.setitem(rules._RULES, "test_pause_once", pause_once)

    base_alone = generate_rows(tiny_llama, [Row("hello")], CONFIG)[0].token_ids
    edit_a = Edit((LayerEdit(1, torch.linspace(-1, 1, 64), 50.0, "test_pause_once"),))
    out_a: list = []
    thread = threading.Thread(
        target=lambda: out_a.append(generate_rows(tiny_llama, [Row("hello", edit_a)], CONFIG))
    )
    thread.start()
    assert inside_a.wait(timeout=60)
    out_b = generate_rows(tiny_llama, [Row("hello")], CONFIG)[0].token_ids  # A's hooks are live
    b_done.set()
    thread.join()
    assert out_b == base_alone
    assert out_a[0][0].token_ids != base_alone


def test_hidden_of_and_with_hidden_handle_tuple_outputs():
    """MoE MLPs return (hidden, router logits) and some blocks (hidden, cache, …): the edit
    reads and replaces the first element and keeps the rest."""
    from alignez_core.engine.hooks import hidden_of, with_hidden

    hidden, extra, more = torch.ones(1, 2, 4), torch.zeros(3), torch.full((2,), 7.0)
    assert hidden_of((hidden, extra)) is hidden and hidden_of(hidden) is hidden
    assert hidden_of(("not a tensor", extra)) is None and hidden_of(None) is None
    edited = hidden * 2
    replaced = with_hidden((hidden, extra, more), edited)
    assert isinstance(replaced, tuple) and len(replaced) == 3
    assert replaced[0] is edited and replaced[1] is extra and replaced[2] is more
    assert with_hidden(hidden, edited) is edited
