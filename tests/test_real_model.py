"""The engine on the embedded SmolLM2-135M-Instruct (offline, CPU)."""

import pytest
import torch

from alignez_core import SamplingConfig
from alignez_core.engine import Edit, LayerEdit, Row, generate_rows

pytestmark = pytest.mark.real_model
GREEDY = SamplingConfig(max_new_tokens=24, loop_guard=0)  # plain greedy, as HF decodes
PROMPT = "Give me one tip for a rainy day."


def edit(lm, strength: float) -> Edit:
    torch.manual_seed(0)
    direction = torch.randn(lm.hidden_size)
    layers = range(8, 14)
    return Edit(
        tuple(LayerEdit(i, direction / direction.norm(), strength, "scaled_add") for i in layers)
    )


def test_zero_edit_reproduces_plain_generate_token_for_token(real_lm):
    enc = real_lm.encode(real_lm.format_prompt(PROMPT), return_tensors="pt")
    plain = real_lm.model.generate(**enc, max_new_tokens=24, do_sample=False)
    eos = real_lm.tokenizer.eos_token_id
    plain_ids = [t for t in plain[0, enc["input_ids"].shape[1] :].tolist()]
    plain_ids = plain_ids[: plain_ids.index(eos)] if eos in plain_ids else plain_ids
    ours = generate_rows(real_lm, [Row(PROMPT, edit(real_lm, 0.0))], GREEDY)[0]
    assert list(ours.token_ids) == plain_ids


def test_nonzero_edit_changes_the_text(real_lm):
    base, edited = generate_rows(real_lm, [Row(PROMPT), Row(PROMPT, edit(real_lm, 0.6))], GREEDY)
    assert base.text and edited.text and base.text != edited.text


def test_batched_rows_match_running_each_alone(real_lm):
    rows = [Row(PROMPT), Row(PROMPT, edit(real_lm, 0.6)), Row("What is 2 + 2?")]
    batched = generate_rows(real_lm, rows, GREEDY)
    alone = [generate_rows(real_lm, [row], GREEDY)[0] for row in rows]
    assert [b.token_ids for b in batched] == [a.token_ids for a in alone]
