"""Shared benchmark loop: generation ratios measured side by side, runs alternating."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from alignez_core.axes.pack import AxisPack
from alignez_core.engine import Edit, LoadedModel, Row, SamplingConfig, generate_rows
from alignez_core.engine.edit import compile_plan
from alignez_core.engine.warmup import choose_paths, enable_compile, warm_compile
from alignez_core.steering import SteerSettings, combine, comparison_rows, plan_edits
from tests import profiling

PROMPT = "Tell me about a walk in the park on a spring morning."


def _timed(fn: Callable[[], None], sync: bool) -> float:
    """Seconds `fn` takes; with `sync`, queued CUDA work is drained before and after."""
    if sync:
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def axis_edit(lm: LoadedModel, pack: AxisPack, prompt: str = PROMPT) -> Edit:
    """The edit a user gets for `prompt` with the axis at +1 and default settings."""
    settings = SteerSettings()
    (edits,) = plan_edits(lm, [prompt], {pack: 1.0}, settings)
    return combine(edits, settings)


def paired_time_ratios(
    reference: Callable[[], None], cases: dict[str, Callable[[], None]], runs: int, sync: bool
) -> tuple[dict[str, float], list[float]]:
    """Per case, the median over runs of time(case) ÷ time(reference), and the reference times.

    Each pair runs back to back, and the order flips every other run: of two identical runs
    the second is often a few percent faster here, and a fixed order would credit that to
    whichever side always runs second.
    """
    ratios: dict[str, list[float]] = {key: [] for key in cases}
    reference_times = []
    for run in range(runs):
        for key, fn in cases.items():
            if run % 2 == 0:
                base, other = _timed(reference, sync), _timed(fn, sync)
            else:
                other, base = _timed(fn, sync), _timed(reference, sync)
            reference_times.append(base)
            ratios[key].append(other / base)
    return {key: statistics.median(values) for key, values in ratios.items()}, reference_times


def generation_ratios(
    lm: LoadedModel, pack: AxisPack, tokens: int, runs: int, prompt: str = PROMPT
) -> dict[str, float]:
    """Medians of per-pair ratios against plain `model.generate` with the same forced tokens.

    edit_overhead_ratio: tokens/s with the axis applied ÷ plain, batch 1, same prompt again (its
    per-query selection cached, as when a user moves a slider); `_cold_` clears that cache first;
    side_by_side_ratio: time(base + edited as one 2-row batch) ÷ time(plain base);
    three_column_ratio: the studio's default compare, base + edited + prompted (the pole asked
    for in words) as one 3-row batch, ÷ time(plain base);
    sequential_ratio: time(base, then edited, as two runs) ÷ time(plain base);
    plain_batch2_ratio: plain `model.generate` on the prompt twice as one batch ÷ once — the
    floor under side_by_side on this hardware (on a CPU a second row costs compute; on a GPU
    decoding at batch 1–2 it should cost next to nothing).
    """
    config = SamplingConfig(max_new_tokens=tokens, min_new_tokens=tokens)
    enc = lm.encode(lm.format_prompt(prompt), return_tensors="pt")
    enc = enc.to(lm.device)
    enc2 = {key: value.repeat(2, 1) for key, value in enc.items()}

    def plain(inputs: dict = enc) -> None:
        with torch.inference_mode():
            lm.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    def plain_batch2() -> None:
        plain(enc2)

    def edited() -> None:  # plans the edit each time, as a slider move does
        generate_rows(lm, [Row(prompt, axis_edit(lm, pack, prompt))], config)

    def edited_cold() -> None:  # a prompt seen for the first time: selection pays a forward
        lm.query_cache.clear()
        edited()

    def ours_base() -> None:
        generate_rows(lm, [Row(prompt)], config)

    def side_by_side() -> None:
        generate_rows(lm, [Row(prompt), Row(prompt, axis_edit(lm, pack, prompt))], config)

    def three_column() -> None:  # the studio's three columns, as it builds them
        generate_rows(lm, comparison_rows(lm, prompt, {pack: 1.0}, SteerSettings()).rows, config)

    def sequential() -> None:
        ours_base()
        edited()

    plain()  # warm up every path
    plain_batch2()
    side_by_side()
    cases = {"edit": edited, "edit_cold": edited_cold, "base": ours_base, "side": side_by_side,
             "three": three_column, "seq": sequential, "plain2": plain_batch2}  # fmt: skip
    median, plain_times = paired_time_ratios(plain, cases, runs, lm.device.type == "cuda")
    return {
        "plain_tokens_per_s": round(tokens / statistics.median(plain_times), 1),
        "edit_overhead_ratio": round(1 / median["edit"], 3),
        "edit_overhead_cold_ratio": round(1 / median["edit_cold"], 3),
        "no_edit_ratio": round(1 / median["base"], 3),
        "side_by_side_ratio": round(median["side"], 3),
        "three_column_ratio": round(median["three"], 3),
        "sequential_ratio": round(median["seq"], 3),
        "plain_batch2_ratio": round(median["plain2"], 3),
        "runs": runs,
        "tokens": tokens,
    }


def ops_per_forward(lm: LoadedModel, pack: AxisPack, prompt: str = PROMPT) -> dict[str, float]:
    """Tensor ops per decoding forward: plain, with the axis (batch 1), base + edited (batch 2).

    Deterministic and independent of the model's width, so a CPU run predicts the op count of
    the same architecture on a GPU, where decoding at batch 1–2 is bound by kernel launches.
    """
    edit = axis_edit(lm, pack, prompt)
    cases = {"plain": [Row(prompt)], "edited": [Row(prompt, edit)],
             "side_by_side": [Row(prompt), Row(prompt, edit)]}  # fmt: skip
    counts: dict[str, float] = {
        key: profiling.ops_per_forward(
            lambda n, rows=rows: generate_rows(lm, rows, SamplingConfig(n, min_new_tokens=n))
        )
        for key, rows in cases.items()
    }
    layers = max(1, len(edit.layer_edits))
    return {
        **counts,
        "edited_layers": len(edit.layer_edits),
        "edit_extra_ops_per_layer": round((counts["edited"] - counts["plain"]) / layers, 2),
    }


def edit_step_microseconds(
    lm: LoadedModel, pack: AxisPack, prompt: str = PROMPT, repeats: int = 1000
) -> float:
    """Host time of the edit's own work in one decoding step (every edited layer), best of 15.

    The plan's kernels alone on a (1, 1, d) hidden state in the model's dtype, timed in a tight
    loop: the cost that whole-generation ratios hide under ±3 % of run-to-run noise.
    """
    plan = compile_plan([axis_edit(lm, pack, prompt)], lm.num_layers, lm.hidden_size, lm.device)
    assert plan is not None, "the axis edits no layer for this prompt"
    hidden = torch.zeros(1, 1, lm.hidden_size, dtype=lm.dtype, device=lm.device)

    def steps() -> None:
        for _ in range(repeats):
            for key in plan.ops_by_site:
                plan.apply(key, hidden)

    with torch.inference_mode():
        steps()
        best = min(_timed(steps, lm.device.type == "cuda") for _ in range(15))
    return round(best / repeats * 1e6, 1)


def edit_step_share(lm: LoadedModel, pack: AxisPack, plain_tokens_per_s: float) -> dict:
    """The edit's host time per step, and its share of a plain decoding step."""
    microseconds = edit_step_microseconds(lm, pack)
    return {
        "edit_step_us": microseconds,
        "edit_step_share": round(microseconds * 1e-6 * plain_tokens_per_s, 4),
    }


def print_results(results: dict) -> None:
    import json

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


def compiled_ratios(lm: LoadedModel, pack: AxisPack, tokens: int, runs: int, sync: bool) -> dict:
    """The compiled decoding path (`enable_compile`) against eager on the same model:
    warm-up per bucket, speed, the edit's overhead and recompiles across 10 slider moves."""
    forced = SamplingConfig(tokens, min_new_tokens=tokens)
    edit = axis_edit(lm, pack)
    plain_rows, pair_rows = [Row(PROMPT)], [Row(PROMPT), Row(PROMPT, edit)]
    generate_rows(lm, pair_rows, forced)  # warm the eager path first
    out = compile_with_warmup(lm)
    if lm.compiled is None:
        return out

    def run(rows: list[Row]) -> Callable[[], None]:
        return lambda: generate_rows(lm, rows, forced)

    edited_rows = [Row(PROMPT, edit)]
    ratio, times = paired_time_ratios(
        run(plain_rows), {"edited": run(edited_rows), "pair": run(pair_rows)}, runs, sync
    )
    out["compiled_tokens_per_s"] = round(tokens / statistics.median(times), 1)
    out["compiled_edit_overhead_ratio"] = round(1 / ratio["edited"], 3)
    out["compiled_side_by_side_ratio"] = round(ratio["pair"], 3)
    slow, _ = paired_time_ratios(run(pair_rows), {"eager": _eager(lm, run(pair_rows))}, runs, sync)
    out["compiled_speedup"] = round(slow["eager"], 3)
    out["recompiles_on_slider_change"] = recompiles_over_slider_moves(lm, edit, forced)
    return out | chosen_path(lm, run(pair_rows), runs, sync)


def chosen_path(lm: LoadedModel, pair: Callable[[], None], runs: int, sync: bool) -> dict:
    """The engine's own choice for the base + edited pair (`choose_paths`: each bucket timed
    compiled against eager at warm-up) against the faster of the two, side by side:
    `chosen_path_ratio` = tokens/s chosen ÷ tokens/s of the faster path (goal ≥ 0.98)."""
    decoder = lm.compiled
    if decoder is None:
        return {"chosen_path": "eager: " + lm.compile_note}
    choose_paths(lm, (1, 2))
    timing = decoder.timings[2]
    ratio, _ = paired_time_ratios(
        pair, {"eager": _eager(lm, pair), "compiled": _compiled(lm, pair)}, runs, sync
    )
    return {
        "chosen_path": "eager" if timing.eager_faster else "compiled",
        "chosen_path_timing_ms_eager": round(timing.eager_s * 1e3, 1),
        "chosen_path_timing_ms_compiled": round(timing.compiled_s * 1e3, 1),
        "chosen_path_ratio": round(min(ratio.values()), 3),
    }


def compile_with_warmup(lm: LoadedModel, batches: tuple[int, ...] = (1, 2)) -> dict:
    """Switch `lm` to compiled decoding and time each batch bucket's first compile; where it
    cannot compile, the reason instead."""
    enable_compile(lm, warm_batches=())
    out: dict = {}
    for batch in batches:
        started = time.perf_counter()
        warm_compile(lm, (batch,))
        out[f"compile_warmup_s_batch{batch}"] = round(time.perf_counter() - started, 1)
    return out if lm.compiled is not None else out | {"compiled": lm.compile_note}


def scaled_edit(edit: Edit, factor: float) -> Edit:
    """`edit` with every strength times `factor`: a slider moved."""
    return Edit(tuple(replace(e, strength=e.strength * factor) for e in edit.layer_edits))


def recompiles_over_slider_moves(lm: LoadedModel, edit: Edit, forced: SamplingConfig) -> int:
    """Graphs compiled while the slider moves ten times (new strengths, same shapes)."""
    from alignez_core.engine.compiled import graphs_compiled

    before = graphs_compiled()
    for k in range(10):
        generate_rows(lm, [Row(PROMPT), Row(PROMPT, scaled_edit(edit, 0.2 * (k - 5)))], forced)
    return graphs_compiled() - before


def _compiled(lm: LoadedModel, fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` with the warm-up's timings set aside: every bucket it supports decodes compiled."""

    def call() -> None:
        decoder = lm.compiled
        assert decoder is not None
        timings, decoder.timings = decoder.timings, {}
        try:
            fn()
        finally:
            decoder.timings = timings

    return call


def _eager(lm: LoadedModel, fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` with compiled decoding switched off for its duration."""

    def call() -> None:
        compiled, lm.compiled = lm.compiled, None
        try:
            fn()
        finally:
            lm.compiled = compiled

    return call
