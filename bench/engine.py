"""Engine benchmarks on the default model: load, memory, and generation ratios side by side.

Every ratio is taken pair by pair inside one process, runs alternating, and the median is
reported (these machines are noisy; absolute seconds are printed for orientation only).
Prints a table, then one JSON object as the last line.

    python bench/engine.py [--runs 5] [--tokens 64] [--skip-gguf]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from alignez_core import Row, SamplingConfig, generate_rows, load_model  # noqa: E402
from alignez_core.axis import preset  # noqa: E402
from alignez_core.fit import FitConfig, fit_axis  # noqa: E402
from alignez_core.steering import SteerSettings, combine, plan_edits  # noqa: E402

PROMPT = "Tell me about a walk in the park on a spring morning."

_LOAD_PROBE = """
import json, os, time, resource
t = time.perf_counter()
from alignez_core import load_model
lm = load_model()
seconds = time.perf_counter() - t
rss = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "load_seconds": lm.load_seconds, "source": lm.source,
                  "rss_mb": rss, "peak_rss_mb": peak}))
"""


def probe_load(cache_dir: str | None) -> dict:
    env = dict(os.environ)
    if cache_dir:
        env["ALIGNEZ_CACHE_DIR"] = cache_dir
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--skip-gguf", action="store_true", help="skip the cold GGUF load")
    parser.add_argument("--fit-queries", type=int, default=8)
    args = parser.parse_args()
    results: dict = {"machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}"}

    if not args.skip_gguf:
        with tempfile.TemporaryDirectory() as empty_cache:
            results["load_gguf_seconds"] = probe_load(empty_cache)["load_seconds"]
    cached = probe_load(None)
    results["load_cache_seconds"] = cached["load_seconds"]
    results["rss_after_load_mb"] = round(cached["rss_mb"], 1)

    lm = load_model()
    fit_started = time.perf_counter()
    pack = fit_axis(lm, preset("cheerful"), config=FitConfig(n_queries=args.fit_queries))
    results["fit_seconds"] = round(time.perf_counter() - fit_started, 2)
    results["fit_breakdown"] = {k: round(v, 2) for k, v in pack.timings.items()}

    config = SamplingConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    settings = SteerSettings()
    enc = lm.tokenizer(lm.format_prompt(PROMPT), return_tensors="pt", add_special_tokens=False)

    def plain() -> None:
        with torch.inference_mode():
            lm.model.generate(
                **enc,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )

    def edit_for_prompt():
        (edits,) = plan_edits(lm, [PROMPT], {pack: 1.0}, settings)
        return combine(edits, settings.positions)

    def edited() -> None:
        generate_rows(lm, [Row(PROMPT, edit_for_prompt())], config)

    def ours_base() -> None:
        generate_rows(lm, [Row(PROMPT)], config)

    def side_by_side() -> None:
        generate_rows(lm, [Row(PROMPT), Row(PROMPT, edit_for_prompt())], config)

    def sequential() -> None:
        ours_base()
        edited()

    plain()  # warm up
    side_by_side()
    samples: dict[str, list[float]] = {k: [] for k in ("edit", "base", "side", "seq")}
    plain_times = []
    for _ in range(args.runs):
        for key, fn in (
            ("edit", edited),
            ("base", ours_base),
            ("side", side_by_side),
            ("seq", sequential),
        ):
            base_time = timed(plain)
            plain_times.append(base_time)
            samples[key].append(timed(fn) / base_time)

    def med(key: str) -> float:
        return round(statistics.median(samples[key]), 3)

    results["plain_tokens_per_s"] = round(args.tokens / statistics.median(plain_times), 1)
    results["edit_overhead_ratio"] = round(1 / med("edit"), 3)  # tokens/s edited ÷ plain
    results["no_edit_ratio"] = round(1 / med("base"), 3)
    results["side_by_side_ratio"] = med("side")  # time(base+edited batch) ÷ time(plain)
    results["sequential_ratio"] = med("seq")  # time(base, then edited) ÷ time(plain)
    results["runs"] = args.runs
    results["tokens"] = args.tokens

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
