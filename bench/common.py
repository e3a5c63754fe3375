"""Shared benchmark loop: generation ratios measured side by side, runs alternating."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from alignez_core import LoadedModel, Row, SamplingConfig, generate_rows
from alignez_core.pack import AxisPack
from alignez_core.steering import SteerSettings, combine, plan_edits

PROMPT = "Tell me about a walk in the park on a spring morning."


def _timer(sync: bool) -> Callable[[Callable[[], None]], float]:
    def timed(fn: Callable[[], None]) -> float:
        if sync:
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    return timed


def generation_ratios(
    lm: LoadedModel, pack: AxisPack, tokens: int, runs: int, prompt: str = PROMPT
) -> dict[str, float]:
    """Medians of per-pair ratios against plain `model.generate` with the same forced tokens.

    edit_overhead_ratio: tokens/s with the axis applied ÷ plain, batch 1, same prompt again (its
    per-query selection cached, as when a user moves a slider); `_cold_` clears that cache first;
    side_by_side_ratio: time(base + edited as one 2-row batch) ÷ time(plain base);
    sequential_ratio: time(base, then edited, as two runs) ÷ time(plain base).
    """
    config = SamplingConfig(max_new_tokens=tokens, min_new_tokens=tokens)
    settings = SteerSettings()
    enc = lm.tokenizer(lm.format_prompt(prompt), return_tensors="pt", add_special_tokens=False)
    enc = enc.to(lm.device)
    timed = _timer(lm.device.type == "cuda")

    def plain() -> None:
        with torch.inference_mode():
            lm.model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    def edit():
        (edits,) = plan_edits(lm, [prompt], {pack: 1.0}, settings)
        return combine(edits, settings.positions)

    def edited() -> None:
        generate_rows(lm, [Row(prompt, edit())], config)

    def edited_cold() -> None:  # a prompt seen for the first time: selection pays a forward
        lm.query_cache.clear()
        edited()

    def ours_base() -> None:
        generate_rows(lm, [Row(prompt)], config)

    def side_by_side() -> None:
        generate_rows(lm, [Row(prompt), Row(prompt, edit())], config)

    def sequential() -> None:
        ours_base()
        edited()

    plain()  # warm up both paths
    side_by_side()
    cases = {"edit": edited, "edit_cold": edited_cold, "base": ours_base, "side": side_by_side,
             "seq": sequential}  # fmt: skip
    ratios: dict[str, list[float]] = {k: [] for k in cases}
    plain_times = []
    for _ in range(runs):
        for key, fn in cases.items():
            reference = timed(plain)
            plain_times.append(reference)
            ratios[key].append(timed(fn) / reference)
    median = {k: statistics.median(v) for k, v in ratios.items()}
    return {
        "plain_tokens_per_s": round(tokens / statistics.median(plain_times), 1),
        "edit_overhead_ratio": round(1 / median["edit"], 3),
        "edit_overhead_cold_ratio": round(1 / median["edit_cold"], 3),
        "no_edit_ratio": round(1 / median["base"], 3),
        "side_by_side_ratio": round(median["side"], 3),
        "sequential_ratio": round(median["seq"], 3),
        "runs": runs,
        "tokens": tokens,
    }


def print_results(results: dict) -> None:
    import json

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))
