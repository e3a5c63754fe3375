"""Where does a base model's clean edge lie? A strength sweep on held-out tuning prompts.

Fits each axis on a named model with the fit's defaults for its kind (seed queries 1–N), then
steers at fixed strengths c (units of each edited layer's residual norm) on tuning prompts the
fit never saw, and reports per c and sign: the axis judge's shift against base on the answer's
turn, looping answers, and perplexity ÷ base (scored by the unedited model). The pack's own
calibration (on its fit queries) is recorded beside the sweep, so the two can be compared.

    python bench/base_strength.py [--model gemma3-270m] [--axes cheerful simple] [--prompts 24]
                                  [--readout answers] [--rule mean_diff] [--band 0.25 0.7]
                                  [--scales 0.02 0.05]

Prints one line per cell, then one JSON object as its last line (docs/base-strength.log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import get_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignez_core import load_model, preset
from alignez_core.axes.axis import ASSETS
from alignez_core.axes.queries import read_queries
from alignez_core.evaluation.evaluate import Cell, EvalConfig, evaluate
from alignez_core.fitting.fit import FitConfig, Readout, fit_axis
from alignez_core.measure.judges import PRESET_JUDGES

SCALES = (0.005, 0.01, 0.02, 0.03, 0.05)


def judged(cell: Cell, judge: str, base_perplexity: float) -> dict:
    """One cell as the logs print it: the judge's shift vs base [95 %], looping, perplexity."""
    shift = cell.differences[judge]
    return {
        "shift": round(shift.mean, 3),
        "low": round(shift.low, 3),
        "high": round(shift.high, 3),
        "looping": cell.fluency.degenerate,
        "perplexity_ratio": round(cell.fluency.perplexity / base_perplexity, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument(
        "--axes", nargs="+", default=["cheerful", "simple"], choices=tuple(PRESET_JUDGES)
    )
    parser.add_argument("--prompts", type=int, default=24, help="from assets/tune_prompts.txt")
    parser.add_argument("--queries", type=int, default=24, help="fit queries per axis")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--readout", choices=get_args(Readout), default=FitConfig().readout)
    parser.add_argument("--rule", default=None, help="default: the readout's own")
    parser.add_argument("--band", type=float, nargs=2, default=None, help="default: the readout's")
    args = parser.parse_args()
    lm = load_model(args.model)
    prompts = read_queries(ASSETS / "tune_prompts.txt").queries[: args.prompts]
    band = tuple(args.band) if args.band else None
    out: dict = {"model": lm.model_id, "kind": lm.kind, "n_prompts": len(prompts),
                 "readout": args.readout, "rule": args.rule, "band": band,
                 "axes": {}}  # fmt: skip
    for name in args.axes:
        judge = PRESET_JUDGES[name]
        started = time.perf_counter()
        config = FitConfig.for_kind(lm.effective_kind, n_queries=args.queries, readout=args.readout)
        pack = fit_axis(lm, preset(name), config=config)
        fit_seconds = round(time.perf_counter() - started, 1)
        rows = []
        for scale in args.scales:
            steer = EvalConfig(strengths=(-1.0, 1.0), rules=(args.rule or pack.fitted_rule(),),
                                judges=(judge,), scale=scale, band=band,
                                max_new_tokens=args.tokens)  # fmt: skip
            report = evaluate(lm, pack, prompts, steer)
            base = report.base_fluency
            for strength in (-1.0, 1.0):
                cell = report.cell(steer.rules[0], strength)
                row = {"c": scale, "sign": int(strength), **judged(cell, judge, base.perplexity)}
                rows.append(row)
                print(f"{name} c {scale:g} {strength:+g}: {row}", flush=True)
        out["axes"][name] = {
            "judge": judge,
            "fit_seconds": fit_seconds,
            "band": band or pack.fitted_band(),
            "calibration": pack.calibration.to_dict() if pack.calibration else None,
            "base_score": round(report.base_scores[judge], 3),
            "base_looping": report.base_fluency.degenerate,
            "base_perplexity": round(report.base_fluency.perplexity, 3),
            "rows": rows,
        }
        print(f"{name}: base {out['axes'][name]['base_score']}, "
              f"{report.base_fluency.degenerate} looping, perplexity "
              f"{report.base_fluency.perplexity:.3f}", flush=True)  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
