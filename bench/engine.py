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
import resource
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
from common import (  # noqa: E402
    PROMPT,
    edit_step_share,
    generation_ratios,
    ops_per_forward,
    print_results,
)
from peers import PEERS, peer_ratios  # noqa: E402

from alignez_core import load_model  # noqa: E402
from alignez_core.axes.axis import preset  # noqa: E402
from alignez_core.fitting.fit import FitConfig, fit_axis  # noqa: E402

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


def _python_json(args: list[str], env: dict | None = None) -> dict:
    """Run Python in a fresh process (its own imports, threads and RSS); its last line as JSON."""
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_load(cache_dir: str | None) -> dict:
    env = dict(os.environ)
    if cache_dir:
        env["ALIGNEZ_CACHE_DIR"] = cache_dir
    return _python_json(["-c", _LOAD_PROBE], env)


def host_bound_proxy(runs: int, tokens: int) -> dict:
    """bench/gpu.py --host-bound-proxy (it pins torch to one thread, hence its own process)."""
    args = ["--runs", str(runs), "--tokens", str(tokens)]
    proxy = _python_json(["bench/gpu.py", "--host-bound-proxy", *args])
    keep = ("ops_per_forward", "edit_step_us", "edit_step_share", "edit_overhead_ratio",
            "side_by_side_ratio", "plain_batch2_ratio")  # fmt: skip
    return {key: proxy[key] for key in keep}


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
    # The slider's per-sign calibration is part of every fit; its goal is ≤ 30 % of the fit.
    results["calibration_share_of_fit"] = round(
        pack.timings.get("calibration", 0.0) / results["fit_seconds"], 3
    )

    results["ops_per_forward"] = ops_per_forward(lm, pack)
    results.update(generation_ratios(lm, pack, args.tokens, args.runs))
    results.update(edit_step_share(lm, pack, results["plain_tokens_per_s"]))
    if PEERS.exists():
        results["peers"] = peer_ratios(lm, PROMPT, args.tokens, args.runs)
    else:
        results["peers"] = "not installed (make bench installs them into .bench-peers)"
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["host_bound_proxy"] = host_bound_proxy(args.runs, args.tokens)
    print_results(results)


if __name__ == "__main__":
    main()
