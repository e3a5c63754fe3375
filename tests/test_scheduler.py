"""Cross-session batching (`engine/scheduler.py`) on a tiny model: shared batches, isolation."""

import threading

import pytest
import torch

from alignez_core import AlignEZError, SamplingConfig
from alignez_core.engine import Edit, LayerEdit, Row, stream_rows
from alignez_core.engine.scheduler import Scheduler
from tests.tiny import wait_until_idle

GREEDY = SamplingConfig(max_new_tokens=16, loop_guard=0)
PROMPTS = ["tell me a story", "what is rain", "hi", "describe a long walk in the hills"]


def edit_at(lm, strength: float, layer: int = 1, seed: int = 0) -> Edit:
    direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(seed))
    return Edit((LayerEdit(layer, direction / direction.norm(), strength, "scaled_add"),))


def run_together(scheduler: Scheduler, requests: list[tuple[list[Row], SamplingConfig]]):
    """Submit every request at once (one gather window) and read each to its end."""
    tickets = [scheduler.submit(rows, config) for rows, config in requests]
    finals: list[list[str]] = [[] for _ in tickets]

    def read(i: int) -> None:
        for texts in scheduler.read(tickets[i]):
            finals[i] = texts

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(tickets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return tickets, finals


@pytest.fixture
def scheduler(tiny_llama):
    scheduler = Scheduler(tiny_llama, max_rows=16, gather_seconds=0.3)
    yield scheduler
    scheduler.close()


def test_a_row_never_depends_on_its_neighbours_steering(tiny_llama, scheduler):
    """Same prompts, every neighbour's edit changed: the target rows' tokens stay the same."""

    def requests(neighbour_strength: float, layer: int):
        target = ([Row(PROMPTS[0]), Row(PROMPTS[0], edit_at(tiny_llama, 2.0))], GREEDY)
        others = [
            ([Row(p, edit_at(tiny_llama, neighbour_strength * (i + 1), layer, seed=i))], GREEDY)
            for i, p in enumerate(PROMPTS[1:])
        ]
        return [target, *others]

    first, _ = run_together(scheduler, requests(3.0, 1))
    second, _ = run_together(scheduler, requests(-4.0, 2))
    assert first[0].batch_rows == second[0].batch_rows == 5  # one shared batch each time
    assert first[0].path == "eager: compiled decoding is off"  # the path decode_batch took
    assert first[0].token_ids == second[0].token_ids
    assert first[1].token_ids != second[1].token_ids  # the neighbours' steering did change
    wait_until_idle(tiny_llama)


def test_a_lone_request_streams_as_stream_rows_does(tiny_llama, scheduler):
    rows = [Row(PROMPTS[3]), Row(PROMPTS[3], edit_at(tiny_llama, 3.0))]
    traces_alone: dict[int, list[torch.Tensor]] = {2: []}
    traces_shared: dict[int, list[torch.Tensor]] = {2: []}
    alone = list(stream_rows(tiny_llama, rows, GREEDY, traces_alone))
    shared = list(scheduler.stream(rows, GREEDY, traces_shared))
    assert shared[-1] == alone[-1]
    assert shared[-1][0] != shared[-1][1]
    assert torch.equal(torch.stack(traces_shared[2]), torch.stack(traces_alone[2]))


def test_each_request_keeps_its_own_token_limit_and_sampling(tiny_llama, scheduler):
    short = SamplingConfig(max_new_tokens=4, loop_guard=0)
    sampled = SamplingConfig(max_new_tokens=16, temperature=0.9, seed=7, loop_guard=0)
    tickets, _ = run_together(
        scheduler, [([Row(PROMPTS[0])], short), ([Row(PROMPTS[1])], sampled), ([Row("x")], GREEDY)]
    )
    assert tickets[0].batch_rows == 3
    assert len(tickets[0].token_ids[0]) == 4
    assert len(tickets[1].token_ids[0]) > 4
    alone, _ = run_together(scheduler, [([Row(PROMPTS[1])], sampled)])
    assert alone[0].batch_rows == 1
    assert alone[0].token_ids == tickets[1].token_ids  # its own generator, whatever the batch


def test_cancelling_one_request_leaves_the_others_whole(tiny_llama, scheduler):
    config = SamplingConfig(max_new_tokens=24, min_new_tokens=24, loop_guard=0)
    kept_alone, _ = run_together(scheduler, [([Row(PROMPTS[1])], config), ([Row("x")], config)])
    quitter = scheduler.submit([Row(PROMPTS[0])], config)
    kept = scheduler.submit([Row(PROMPTS[1])], config)
    for step, _texts in enumerate(scheduler.read(quitter)):
        if step == 2:
            quitter.cancel()
            break
    final = list(scheduler.read(kept))[-1]
    assert len(quitter.token_ids[0]) == 3
    assert kept.token_ids == kept_alone[0].token_ids
    assert final[0]
    wait_until_idle(tiny_llama)


def test_different_shared_settings_decode_in_separate_batches(tiny_llama, scheduler):
    guarded = SamplingConfig(max_new_tokens=8, loop_guard=8)
    tickets, finals = run_together(
        scheduler, [([Row(PROMPTS[0])], GREEDY), ([Row(PROMPTS[1])], guarded)]
    )
    assert [t.batch_rows for t in tickets] == [1, 1]
    assert all(f[0] for f in finals)


def test_a_bad_request_is_refused_alone(tiny_llama, scheduler):
    wrong = Edit((LayerEdit(1, torch.ones(tiny_llama.hidden_size + 1), 1.0, "scaled_add"),))
    with pytest.raises(AlignEZError, match="hidden"):
        scheduler.submit([Row(PROMPTS[0], wrong)], GREEDY)
    with pytest.raises(AlignEZError, match="no rows"):
        scheduler.submit([], GREEDY)
    with pytest.raises(AlignEZError, match="cap is 16"):
        scheduler.submit([Row("x")] * 17, GREEDY)
    assert list(scheduler.stream([Row(PROMPTS[0])], GREEDY))[-1][0]


def test_a_failing_batch_reaches_every_caller_and_the_next_batch_serves(tiny_llama, scheduler):
    original = tiny_llama.model.forward
    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    tiny_llama.model.forward = failing
    try:
        first = scheduler.submit([Row(PROMPTS[0])], GREEDY)
        second = scheduler.submit([Row(PROMPTS[1])], GREEDY)
        for ticket in (first, second):
            with pytest.raises(RuntimeError, match="boom"):
                list(scheduler.read(ticket))
    finally:
        tiny_llama.model.forward = original
    assert list(scheduler.stream([Row(PROMPTS[0])], GREEDY))[-1][0]
    wait_until_idle(tiny_llama)


def test_a_cancelled_request_stops_decoding_its_batch(tiny_llama, scheduler):
    """A lone request cancelled after two steps ends its batch there, not at 24 tokens."""
    config = SamplingConfig(max_new_tokens=24, min_new_tokens=24, loop_guard=0)
    forwards = 0

    def count(module, args, output):
        nonlocal forwards
        forwards += 1

    handle = tiny_llama.model.register_forward_hook(count)
    try:
        ticket = scheduler.submit([Row(PROMPTS[0])], config)
        for step, _texts in enumerate(scheduler.read(ticket)):
            if step == 1:
                ticket.cancel()
        assert list(scheduler.stream([Row("x")], GREEDY))  # the scheduler serves the next one
    finally:
        handle.remove()
    assert forwards < 24 + GREEDY.max_new_tokens
    assert len(ticket.token_ids[0]) < 24


def test_closing_tells_waiting_requests_and_refuses_new_ones(tiny_llama):
    scheduler = Scheduler(tiny_llama, gather_seconds=0.5)
    ticket = scheduler.submit([Row(PROMPTS[0])], GREEDY)
    scheduler.close()  # before its batch started: it hears why
    with pytest.raises(AlignEZError, match="send the request again"):
        list(scheduler.read(ticket))
    with pytest.raises(AlignEZError, match="closed"):
        scheduler.submit([Row(PROMPTS[0])], GREEDY)


def test_a_request_ends_when_its_own_rows_do(tiny_llama, scheduler):
    """A short answer returns while its batch goes on for a longer one."""
    short = SamplingConfig(max_new_tokens=2, loop_guard=0)
    long = SamplingConfig(max_new_tokens=400, loop_guard=0)
    quick = scheduler.submit([Row(PROMPTS[0])], short)
    slow = scheduler.submit([Row(PROMPTS[1])], long)
    steps = list(scheduler.read(quick))
    decoded_so_far = slow._steps.qsize()  # the batch's steps made when the short one returned
    assert len(steps) == 2 and len(quick.token_ids[0]) == 2
    assert quick.batch_rows == 2 and not slow.cancelled
    list(scheduler.read(slow))
    assert decoded_so_far < 300 < len(slow.token_ids[0])
    wait_until_idle(tiny_llama)
