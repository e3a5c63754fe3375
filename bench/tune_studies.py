"""The two defaults chosen on the 70 tuning prompts, measured again (docs/RESULTS.md).

The tuning prompts are the seed queries the shipped packs were not fitted on (25–46) and the 48
of `assets/tune_prompts.txt`; the dev prompts are kept for checking a choice after it is made.

    python bench/tune_studies.py loop-guard     # cheerful at c 0.02, guard 0 / 6 / 8 (~8 min)
    python bench/tune_studies.py concise-band   # concise +1, band × c (~6 min)

Each prints a table (Δ judge vs base, looping answers, perplexity ÷ base), then one JSON object
as its last line. The `no_repeat_ngram_size` rows of the loop-guard table used transformers'
own option, which `SamplingConfig` does not expose; they are not rerun here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignez_core import AxisPack, load_model
from alignez_core.axes.axis import ASSETS
from alignez_core.axes.queries import read_queries
from alignez_core.evaluation.evaluate import EvalConfig, EvalReport, evaluate

PACKS = Path(__file__).resolve().parent.parent / "assets" / "packs"
FIT_QUERIES = 24  # the shipped packs are fitted on the first 24 seed queries (the CLI default)
LOOP_GUARDS = (0, 6, 8)
CONCISE_BANDS = (
    ((0.4, 0.85), 0.02),
    ((0.25, 0.7), 0.02),
    ((0.25, 0.7), 0.025),
    ((0.25, 0.7), 0.03),
    ((0.3, 0.75), 0.03),
    ((0.2, 0.6), 0.03),
)


def tuning_prompts() -> list[str]:
    seeds = read_queries(ASSETS / "seed_queries.txt").queries[FIT_QUERIES:]
    return [*seeds, *read_queries(ASSETS / "tune_prompts.txt").queries]


def _cell(report: EvalReport, strength: float, judge: str) -> dict:
    cell = report.cell(report.config.rules[0], strength)
    return {
        "shift": round(cell.differences[judge].mean, 3),
        "looping": cell.fluency.degenerate,
        "perplexity_ratio": round(cell.fluency.perplexity / report.base_fluency.perplexity, 3),
    }


def loop_guard(lm, prompts: list[str]) -> dict:
    pack = AxisPack.load(PACKS / "cheerful.safetensors", lm)
    rows = {}
    for guard in LOOP_GUARDS:
        config = EvalConfig(strengths=(-1.0, 1.0), rules=(pack.rule_defaults["rule"],),
                            judges=("tone",), scale=0.02, loop_guard=guard)  # fmt: skip
        report = evaluate(lm, pack, prompts, config)
        rows[str(guard)] = {
            "-1": _cell(report, -1.0, "tone"),
            "+1": _cell(report, 1.0, "tone"),
            "base_looping": report.base_fluency.degenerate,
            "base_perplexity": round(report.base_fluency.perplexity, 3),
        }
        print(f"guard {guard}: −1 {rows[str(guard)]['-1']}  +1 {rows[str(guard)]['+1']}  "
              f"base {report.base_fluency.degenerate} looping, "
              f"perplexity {report.base_fluency.perplexity:.3f}", flush=True)  # fmt: skip
    return {"study": "loop-guard", "n_prompts": len(prompts), "c": 0.02, "guards": rows}


def concise_band(lm, prompts: list[str]) -> dict:
    pack = AxisPack.load(PACKS / "concise.safetensors", lm)
    rows = []
    for band, scale in CONCISE_BANDS:
        config = EvalConfig(strengths=(1.0,), rules=(pack.rule_defaults["rule"],),
                            judges=("words",), band=band, scale=scale)  # fmt: skip
        report = evaluate(lm, pack, prompts, config)
        row = {"band": list(band), "c": scale, "+1": _cell(report, 1.0, "words"),
               "base_words": round(report.base_scores["words"], 1)}  # fmt: skip
        rows.append(row)
        print(f"band {band} c {scale}: +1 {row['+1']}  (base {row['base_words']} words)",
              flush=True)  # fmt: skip
    return {"study": "concise-band", "n_prompts": len(prompts), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study", choices=("loop-guard", "concise-band"))
    args = parser.parse_args()
    lm = load_model()
    prompts = tuning_prompts()
    study = loop_guard if args.study == "loop-guard" else concise_band
    print(json.dumps(study(lm, prompts)))


if __name__ == "__main__":
    main()
