"""A base model's answer ends at its turn: the marker rule, and generation stopping per row.

The tiny model is forced (by a hook on its LM head) to write a scripted text per row, so the
place each row opens a new turn is known exactly."""

from __future__ import annotations

import pytest
import torch

import alignez_core as az
from alignez_core.engine import Edit, LayerEdit, Row, SamplingConfig, generate_rows, stream_rows
from alignez_core.engine.turns import (
    answer_of_turn,
    answer_so_far,
    tokens_of_turn,
    turn_end,
)
from tests.tiny import make_model

GREEDY = SamplingConfig(max_new_tokens=40, loop_guard=0)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Sure, walk.\nHuman: and then?", "Sure, walk."),
        ("Sure.\n\nUSER: more", "Sure."),
        ("Fine.\n  assistant : again", "Fine."),
        ("Human: straight away", ""),
        ("Ask the user: they know.", "Ask the user: they know."),  # not at a line's start
        ("A line.\nHumane people\nagree", "A line.\nHumane people\nagree"),  # no colon
        ("Nothing to cut", "Nothing to cut"),
        ("Bees make it.\nBee: Honey is nectar.", "Bees make it."),  # an invented speaker
        ("It rains.\nMr Smith: why?", "It rains."),
        ("Teacher: a first line is the answer", "Teacher: a first line is the answer"),
        (
            "Steps.\nthe sky: blue\nThe sky is blue: yes",
            "Steps.\nthe sky: blue\nThe sky is blue: yes",
        ),
    ],
)
def test_the_answer_is_what_comes_before_a_line_that_opens_a_turn(text, answer):
    assert answer_of_turn(text) == answer
    assert (turn_end(text) is None) == (answer == text)


def test_a_stream_holds_back_a_line_that_may_become_a_marker():
    assert answer_so_far("Sure.\nHum") == "Sure."
    assert answer_so_far("Sure.\nus") == "Sure."
    assert answer_so_far("Sure.\nHumid air") == "Sure.\nHumid air"
    assert answer_so_far("Sure.\nTeacher") == answer_so_far("Sure.\nTeacher:") == "Sure."
    assert answer_so_far("Sure.\nI'm here") == "Sure.\nI'm here"
    assert answer_so_far("Teacher") == "Teacher"  # the first line cannot be a speaker's
    assert answer_of_turn("Sure.\nHum") == "Sure.\nHum"  # at the end, the whole line shows


def _force(lm, scripts: list[str]):
    """Make the LM head write `scripts[row]` one byte token per step (then end of sequence)."""
    ids = [lm.tokenizer.encode(s, add_special_tokens=False) for s in scripts]
    eos = lm.tokenizer.eos_token_id
    calls = {"n": 0}

    def hook(module, args, output):
        step = calls["n"]
        calls["n"] += 1
        forced = torch.full_like(output[:, -1], -1e4)
        for row, script in enumerate(ids[: output.shape[0]]):
            forced[row, script[step] if step < len(script) else eos] = 1e4
        output = output.clone()
        output[:, -1] = forced
        return output

    return lm.model.lm_head.register_forward_hook(hook), calls


@pytest.fixture(scope="module")
def base_lm():
    return make_model("llama", chat=False)


SCRIPTS = [
    "Go for a walk.\nHuman: and after that?\nAssistant: more",
    "Read a book by the window, then rest a while.",
]


def test_each_row_stops_at_its_own_turn_and_the_rest_of_the_batch_goes_on(base_lm):
    handle, _ = _force(base_lm, SCRIPTS)
    try:
        edit = Edit((LayerEdit(1, torch.ones(1, 64), 0.1, "add", "residual"),))
        first, second = generate_rows(base_lm, [Row("hi"), Row("hi", edit)], GREEDY)
    finally:
        handle.remove()
    assert first.text == "Go for a walk."
    assert base_lm.tokenizer.decode(first.token_ids) == "Go for a walk."
    assert second.text == SCRIPTS[1][:40]  # no marker: the full 40 tokens


def test_generation_ends_once_every_row_has_ended_its_turn(base_lm):
    scripts = ["Yes.\nUser: x" + "y" * 60, "No.\nhuman: z" + "w" * 60]
    handle, calls = _force(base_lm, scripts)
    try:
        outputs = generate_rows(base_lm, [Row("a"), Row("b")], GREEDY)
    finally:
        handle.remove()
    assert [o.text for o in outputs] == ["Yes.", "No."]
    assert calls["n"] <= len("Yes.\nUser:") + 1  # stopped at the marker, not at 40 tokens


def test_a_stream_never_shows_the_marker_and_ends_as_generate_does(base_lm):
    handle, _ = _force(base_lm, SCRIPTS)
    try:
        seen = list(stream_rows(base_lm, [Row("hi"), Row("hi")], GREEDY))
    finally:
        handle.remove()
    assert all("Hum" not in texts[0] and "\nH" not in texts[0] for texts in seen)
    assert seen[-1] == ["Go for a walk.", SCRIPTS[1][:40]]


def test_a_chat_model_keeps_its_text_its_own_end_of_turn_token_ends_it():
    chat = make_model("llama", chat=True)
    handle, _ = _force(chat, SCRIPTS)
    try:
        (out,) = generate_rows(chat, [Row("hi")], GREEDY)
    finally:
        handle.remove()
    assert out.text == SCRIPTS[0][:40]


def test_turn_end_stops_a_users_own_generate_per_row(base_lm):
    prompts = base_lm.encode_batch([base_lm.format_prompt("hi")] * 2)
    length = prompts["input_ids"].shape[1]
    handle, _ = _force(base_lm, SCRIPTS)
    try:
        out = base_lm.model.generate(
            **prompts, max_new_tokens=40, do_sample=False,
            stopping_criteria=[az.turn_end(base_lm, length)],  # the public export
            pad_token_id=base_lm.tokenizer.pad_token_id,
        )  # fmt: skip
    finally:
        handle.remove()
    texts = base_lm.tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
    assert az.answer_of_turn(texts[0]) == "Go for a walk."
    assert texts[0].startswith("Go for a walk.\nHuman:") and len(texts[0]) < 25  # stopped there
    assert texts[1] == SCRIPTS[1][:40]


def test_tokens_of_turn_keeps_the_tokens_before_the_marker(base_lm):
    ids = base_lm.tokenizer.encode("Yes.\nHuman: no", add_special_tokens=False)
    kept = tokens_of_turn(ids, base_lm.tokenizer)
    assert base_lm.tokenizer.decode(kept) == "Yes."
    assert tokens_of_turn(ids[:4], base_lm.tokenizer) == ids[:4]
