"""How fast decoding is against what the hardware allows (the speed issue's measurements).

Prints, from one run on one machine: the measured read bandwidth and the tokens/s ceiling it
sets per weight dtype (a token reads every weight once), plain and steered (base + edited
batch) decoding in float32 and bfloat16, eager, measured pair by pair with runs alternating;
and, with --compile, transformers' static KV cache + `torch.compile` on plain decoding: its
warm-up and its speed against eager. The compiled path carries no edit yet: the engine's hooks
are not graph-safe, so nothing here claims a compiled *steered* number.

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

from common import PROMPT, paired_time_ratios  # noqa: E402

from alignez_core import Edit, LayerEdit, Row, SamplingConfig, generate_rows, load_model  # noqa: E402


def read_bandwidth_gb_s(gib: float = 1.0, repeats: int = 7) -> float:
    """Bytes read per second by a reduction over a buffer far larger than the caches."""
    data = torch.ones(int(gib * 2**30 / 4), dtype=torch.float32)
    data.sum()  # first touch
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - started)
    return data.numel() * 4 / statistics.median(times) / 1e9


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also time static cache + compile")
    args = parser.parse_args()
    n = args.tokens
    out: dict = {"machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}"}
    bandwidth = read_bandwidth_gb_s()
    out["read_bandwidth_gb_s"] = round(bandwidth, 1)
    models = {
        "float32": load_model(dtype=torch.float32),
        "bfloat16": load_model(dtype=torch.bfloat16),
    }
    forced = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def plain(lm, **extra):
        enc = lm.tokenizer(lm.format_prompt(PROMPT), return_tensors="pt", add_special_tokens=False)
        return lambda: lm.model.generate(**enc, **forced, **extra,
                                         pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    def steered(lm):
        torch.manual_seed(0)
        vector = torch.randn(lm.hidden_size)
        edit = Edit(tuple(LayerEdit(i, (2 * vector / vector.norm())[None], 1.0, "add", "residual")
                          for i in range(8, 21)))  # fmt: skip
        rows = [Row(PROMPT), Row(PROMPT, edit)]
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
            out[f"share_of_ceiling_{name}"] = round(rate / out[f"ceiling_tokens_per_s_{name}"], 3)
        out["bf16_speedup"] = round(1 / ratios["bf16"], 3)
        pair, pair_times = paired_time_ratios(
            steered(models["float32"]), {"bf16": steered(models["bfloat16"])}, args.runs, False
        )
        out["steered_pair_tokens_per_s_float32"] = round(n / statistics.median(pair_times), 1)
        out["steered_pair_bf16_speedup"] = round(1 / pair["bf16"], 3)
        if args.compile:
            lm = load_model(dtype=torch.float32)
            eager_fn = plain(models["float32"])
            lm.model.forward = torch.compile(lm.model.forward, dynamic=False)
            compiled = plain(lm, cache_implementation="static")
            started = time.perf_counter()
            compiled()
            out["compile_warmup_s"] = round(time.perf_counter() - started, 1)
            ratio, times = paired_time_ratios(eager_fn, {"compiled": compiled}, args.runs, False)
            out["compiled_speedup"] = round(1 / ratio["compiled"], 3)
            out["compiled_tokens_per_s"] = round(
                n / statistics.median(times) / ratio["compiled"], 1
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
