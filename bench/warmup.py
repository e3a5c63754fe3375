"""Where compiled decoding's warm-up is paid, and what requests feel meanwhile.

On the real default model, a client asks for a 16-token base + edited pair every `--gap` seconds
(a user reading the last answer) while the studio's warm-up (`enable_compile`,
buckets 2 and 4) runs, with an empty inductor cache unless `--cache` names one. Per phase —
eager before the warm-up, the warm-up's child process, this process compiling from the cache,
after — the pair's time (median, max), how late a 50 ms timer fires in another thread of this
process (what a server's event loop feels: p99, max), and requests that failed. `--mode thread`
warms in a thread of this process instead of a child (the previous design). Prints a table,
then one JSON object.

    python bench/warmup.py [--mode child|thread] [--cache DIR] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
PROMPT = "Tell me about autumn."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("child", "thread"), default="child")
    parser.add_argument("--cache", help="inductor cache folder (default: a new, empty one)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between requests")
    parser.add_argument("--limit", type=float, default=1500, help="give up after this many s")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache or tempfile.mkdtemp(prefix="inductor-")

    from common import print_results

    from alignez_core import load_model
    from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
    from alignez_core.engine.warmup import enable_compile

    lm = load_model()
    greedy = SamplingConfig(max_new_tokens=16)
    rows = [Row(PROMPT), Row(PROMPT)]
    pairs: list[tuple[str, float]] = []
    ticks: list[tuple[str, float]] = []
    errors: list[str] = []
    phase = "eager before"

    def ticker() -> None:
        while phase != "end":
            started = time.perf_counter()
            time.sleep(0.05)
            ticks.append((phase, time.perf_counter() - started - 0.05))

    def pair() -> None:
        started = time.perf_counter()
        try:
            generate_rows(lm, rows, greedy)
        except Exception as exc:  # a request the warm-up broke: count it, keep going
            errors.append(f"{phase}: {type(exc).__name__}: {exc}")
            return
        pairs.append((phase, time.perf_counter() - started))

    threading.Thread(target=ticker, daemon=True).start()
    for _ in range(5):
        pair()
        time.sleep(args.gap)
    began = time.perf_counter()
    worker = enable_compile(lm, warm_batches=(2, 4), warm_process=args.mode == "child")
    while worker.is_alive() and time.perf_counter() - began < args.limit:
        phase = "compiling here" if "process" in lm.warmup_seconds else "warm-up process"
        if args.mode == "thread":
            phase = "compiling here"
        pair()
        time.sleep(args.gap)
    phase = "after"
    for _ in range(5):
        pair()
        time.sleep(args.gap)
    phase = "end"

    result: dict = {"mode": args.mode, "gap_s": args.gap, "compiled": lm.compiled is not None}
    result |= {f"warmup_{k}_s": round(v, 1) for k, v in lm.warmup_seconds.items()}
    result |= {"failed_requests": len(errors), "first_failure": errors[0] if errors else ""}
    order = ("eager before", "warm-up process", "compiling here", "after")
    for name in order:
        took = [s for p, s in pairs if p == name]
        late = sorted(s for p, s in ticks if p == name)
        if not took:
            continue
        key = name.replace(" ", "_").replace("-", "_")
        result[f"{key}_pairs"] = len(took)
        result[f"{key}_pair_median_s"] = round(statistics.median(took), 3)
        result[f"{key}_pair_max_s"] = round(max(took), 3)
        if late:
            result[f"{key}_timer_p99_ms"] = round(1000 * late[int(0.99 * (len(late) - 1))], 1)
            result[f"{key}_timer_max_ms"] = round(1000 * late[-1], 1)
    print_results(result)


if __name__ == "__main__":
    main()
