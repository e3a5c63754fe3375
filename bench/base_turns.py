"""Where a base model's answers end: Gemma 3 270M (pretrained) on the dev and tuning prompts.

With the turn-end rule (`alignez_core/engine/turns.py`, our `generate_rows`: greedy, 64 tokens,
the loop guard on): how many answers end before the token limit, and how many still hold a
turn marker (must be 0). Without it (plain `transformers` generate on the same frame): how many
answers run on into an invented turn.

    python bench/base_turns.py [--model gemma3-270m]   # ~2 min here once the model is cached

Prints one line per prompt set, then one JSON object as its last line (docs/base-turns.log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_studies import tuning_prompts

from alignez_core import load_model
from alignez_core.axes.axis import ASSETS
from alignez_core.axes.queries import read_queries
from alignez_core.engine import Row, SamplingConfig, generate_rows
from alignez_core.engine.turns import turn_end

TOKENS = 64


def measure(lm, prompts: list[str]) -> dict:
    started = time.perf_counter()
    outputs = generate_rows(lm, [Row(p) for p in prompts], SamplingConfig(max_new_tokens=TOKENS))
    seconds = time.perf_counter() - started
    encoded = lm.encode_batch([lm.format_prompt(p) for p in prompts])
    with torch.no_grad():
        plain = lm.model.generate(**encoded, max_new_tokens=TOKENS, do_sample=False,
                                  pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip
    texts = lm.tokenizer.batch_decode(plain[:, encoded["input_ids"].shape[1] :],
                                      skip_special_tokens=True)  # fmt: skip
    return {
        "n": len(prompts),
        "ended_with_rule": sum(len(o.token_ids) < TOKENS for o in outputs),
        "with_marker_with_rule": sum(turn_end(o.text) is not None for o in outputs),
        "invented_turn_without_rule": sum(turn_end(t) is not None for t in texts),
        "seconds_with_rule": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    args = parser.parse_args()
    lm = load_model(args.model)
    sets = {"dev": read_queries(ASSETS / "dev_prompts.txt").queries, "tune": tuning_prompts()}
    result: dict = {"model": lm.model_id, "kind": "chat" if lm.is_chat else "base"}
    for name, prompts in sets.items():
        result[name] = measure(lm, prompts)
        print(name, result[name], flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
