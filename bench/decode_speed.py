"""How fast decoding is against what the hardware allows (the speed issue's measurements).

Prints, from one run on one machine: the measured read bandwidth and the tokens/s ceiling it
sets per weight dtype (a token reads every weight once; each share of the ceiling pairs every
timed run with a bandwidth read just before it), plain and steered (base + edited
batch) decoding in float32 and bfloat16, eager, measured pair by pair with runs alternating;
and, with --compile, the engine's compiled decoding (`enable_compile`: static KV
cache + `torch.compile`, graph-safe edits, multiply-reduce linears on CPUs) in each dtype against
today's float32 eager path and against eager in its own dtype: the warm-up per batch bucket,
plain and steered speed, the share of the ceiling, graphs compiled across 10 slider moves,
how many of the edited row's tokens equal eager decoding's in the same dtype, and the path the
engine chooses for the pair (timed at warm-up) against the faster of the two (float32).

    python bench/decode_speed.py [--runs 5] [--tokens 64] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from common import (  # noqa: E402
    PROMPT,
    chosen_path,
    compile_with_warmup,
    paired_time_ratios,
    recompiles_over_slider_moves,
)

from alignez_core import SamplingConfig, load_model  # noqa: E402
from alignez_core.engine import Edit, LayerEdit, Row, generate_rows  # noqa: E402


def cpu_model() -> str:
    """The CPU's name: figures here differ by model (bfloat16 pays on one, not on another)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
    except (OSError, StopIteration):
        return "CPU"


def read_bandwidth_gb_s(repeats: int = 7, data: torch.Tensor | None = None) -> float:
    """Bytes read per second by a reduction over a buffer far larger than the caches (1 GiB,
    or `data`: a buffer kept across reads, so none allocates and frees a GiB)."""
    if data is None:
        data = torch.ones(2**28, dtype=torch.float32)
        data.sum()  # first touch
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - started)
    return data.numel() * data.element_size() / statistics.median(times) / 1e9


def share_of_ceiling(fn, n: int, nbytes: int, runs: int) -> float:
    """Median over runs of tokens/s ÷ the ceiling from a bandwidth read just before each run:
    this machine's read bandwidth moves by a third within an hour, so the two are paired. One
    buffer serves every read: freeing a fresh GiB before a timed run slowed it by up to 18 %."""
    data = torch.ones(2**28, dtype=torch.float32)
    data.sum()  # first touch
    shares = []
    for _ in range(runs):
        ceiling = read_bandwidth_gb_s(repeats=3, data=data) * 1e9 / nbytes
        started = time.perf_counter()
        fn()
        shares.append(n / (time.perf_counter() - started) / ceiling)
    return round(statistics.median(shares), 3)


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def compiled_figures(models: dict, plain, steered, runs: int, n: int) -> dict:
    """The compiled path per weight dtype against float32 eager (today's path) and against
    eager in its own dtype, side by side in one run. `compiled_speedup` is float32's: the
    default dtype (bfloat16 moves the calibrated edges, docs/RESULTS.md)."""
    out: dict = {}
    forced = SamplingConfig(n, min_new_tokens=n)
    for name in ("float32", "bfloat16"):
        lm = load_model(dtype=getattr(torch, name))
        warm = compile_with_warmup(lm)
        out |= {f"{key}_{name}": value for key, value in warm.items()}
        if lm.compiled is None:
            continue
        rows = steered(lm, rows_only=True)
        compiled_pair = steered(lm)
        compiled_plain = lambda lm=lm: generate_rows(lm, [Row(PROMPT)], forced)  # noqa: E731
        ratio, fp32_times = paired_time_ratios(
            steered(models["float32"]), {"pair": compiled_pair}, runs, False
        )
        out[f"compiled_speedup_{name}"] = round(1 / ratio["pair"], 3)
        out[f"compiled_steered_pair_tokens_per_s_{name}"] = round(
            n / statistics.median(fp32_times) / ratio["pair"], 1
        )
        ratio, plain_times = paired_time_ratios(
            compiled_plain, {"pair": compiled_pair}, runs, False
        )
        out[f"compiled_side_by_side_ratio_{name}"] = round(ratio["pair"], 3)
        rate = n / statistics.median(plain_times)
        out[f"compiled_tokens_per_s_{name}"] = round(rate, 1)
        out[f"compiled_share_of_ceiling_{name}"] = share_of_ceiling(
            compiled_plain, n, weight_bytes(lm.model), runs
        )
        ratio, _ = paired_time_ratios(plain(models[name]), {"c": compiled_plain}, runs, False)
        out[f"compiled_plain_speedup_vs_eager_{name}"] = round(1 / ratio["c"], 3)
        out[f"compiled_equal_tokens_of_{n}_{name}"] = equal_prefix(lm, models[name], rows, n)
        if name == "float32":
            out["compiled_speedup"] = out["compiled_speedup_float32"]
            out["recompiles_on_slider_change"] = recompiles_over_slider_moves(
                lm, rows[1].edit, forced
            )
            out |= chosen_path(lm, compiled_pair, max(runs, 7), False)
    return out


def equal_prefix(compiled, eager, rows: list[Row], n: int) -> int:
    """How many leading tokens the compiled and the eager model agree on (the worse row)."""
    forced = SamplingConfig(n, min_new_tokens=n)
    got, want = generate_rows(compiled, rows, forced), generate_rows(eager, rows, forced)
    return min(_agreed(c.token_ids, e.token_ids) for c, e in zip(got, want, strict=True))


def _agreed(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    same = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return next(same, min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also time static cache + compile")
    args = parser.parse_args()
    n = args.tokens
    out: dict = {"machine": f"{os.cpu_count()} × {cpu_model()}, torch {torch.__version__}"}
    bandwidth = read_bandwidth_gb_s()
    out["read_bandwidth_gb_s"] = round(bandwidth, 1)
    models = {
        "float32": load_model(dtype=torch.float32),
        "bfloat16": load_model(dtype=torch.bfloat16),
    }
    forced = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def plain(lm, **extra):
        enc = lm.encode(lm.format_prompt(PROMPT), return_tensors="pt")
        return lambda: lm.model.generate(**enc, **forced, **extra,
                                         pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    def steered(lm, rows_only: bool = False):
        torch.manual_seed(0)
        vector = torch.randn(lm.hidden_size)
        edit = Edit(tuple(LayerEdit(i, (2 * vector / vector.norm())[None], 1.0, "add", "residual")
                          for i in range(8, 21)))  # fmt: skip
        rows = [Row(PROMPT), Row(PROMPT, edit)]
        if rows_only:
            return rows
        return lambda: generate_rows(lm, rows, SamplingConfig(n, min_new_tokens=n))

    with torch.inference_mode():
        for lm in models.values():
            plain(lm)()
            steered(lm)()
        eager = {}
        for name, lm in models.items():
            out[f"ceiling_tokens_per_s_{name}"] = round(bandwidth * 1e9 / weight_bytes(lm.model), 1)
        ratios, fp32_times = paired_time_ratios(
            plain(models["float32"]), {"bf16": plain(models["bfloat16"])}, args.runs, sync=False
        )
        eager["float32"] = n / statistics.median(fp32_times)
        eager["bfloat16"] = eager["float32"] / ratios["bf16"]
        for name, rate in eager.items():
            out[f"plain_tokens_per_s_{name}"] = round(rate, 1)
            model = models[name]
            out[f"share_of_ceiling_{name}"] = share_of_ceiling(
                plain(model), n, weight_bytes(model.model), args.runs
            )
        out["bf16_speedup"] = round(1 / ratios["bf16"], 3)
        pair, pair_times = paired_time_ratios(
            steered(models["float32"]), {"bf16": steered(models["bfloat16"])}, args.runs, False
        )
        out["steered_pair_tokens_per_s_float32"] = round(n / statistics.median(pair_times), 1)
        out["steered_pair_bf16_speedup"] = round(1 / pair["bf16"], 3)
        if args.compile:
            out |= compiled_figures(models, plain, steered, args.runs, n)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
