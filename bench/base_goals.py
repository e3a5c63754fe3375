"""The steering goals on a base model, as a user gets them: each preset fitted with the defaults
for the model's kind (its calibration included), then slider ±1 and the prompting baseline on
the 24 dev prompts (never used to fit or calibrate). `--readout` changes only the readout,
`--method trained` trains the directions on the fit's pairs (docs/method.md §12). `--prompts
tuning` judges on the 70 tuning prompts instead (seed queries 25–46 and assets/tune_prompts.txt,
where defaults are chosen) without the prompting baseline; `--shipped` steers with the model's
pre-fitted packs instead of fitting; `--save DIR` keeps each fitted pack; `--positions prompt`
fits, calibrates and steers on the prompt's tokens only, `--grid` sets the calibration's
strengths.

Goals on Gemma 3 270M (docs/models.md): cheerful ±1 moves VADER by ≥ +0.30 / ≤ −0.40, simple ±1
moves Flesch–Kincaid by ≤ −1.5 / ≥ +1.5, ≤ 1/24 answers loop, perplexity ≤ 1.3× base.

    python bench/base_goals.py [--model gemma3-270m] [--axes cheerful simple] [--readout answers]
                               [--method trained] [--prompts tuning] [--shipped] [--save DIR]
                               [--positions prompt] [--grid 0.005,0.01,0.02,0.03,0.05]

Prints one line per cell, then one JSON object as its last line (docs/base-goals.log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base_strength import judged
from tune_studies import fit_config_on_grid, tuning_prompts

from alignez_core import fit_axis, load_model, preset
from alignez_core.axes.axis import ASSETS
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_path
from alignez_core.axes.queries import read_queries
from alignez_core.engine.edit import POSITIONS
from alignez_core.evaluation.evaluate import EvalConfig, evaluate
from alignez_core.fitting.fit import READOUTS
from alignez_core.fitting.train import FIT_METHODS
from alignez_core.measure.judges import PRESET_JUDGES
from alignez_core.steering import SteerSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument(
        "--axes", nargs="+", default=["cheerful", "simple"], choices=tuple(PRESET_JUDGES)
    )
    parser.add_argument("--readout", choices=READOUTS, help="default: the model kind's")
    parser.add_argument("--method", choices=FIT_METHODS, default="mean")
    parser.add_argument("--prompts", choices=("dev", "tuning"), default="dev")
    parser.add_argument("--shipped", action="store_true", help="steer with the pre-fitted packs")
    parser.add_argument("--save", type=Path, help="a folder to keep each fitted pack in")
    parser.add_argument("--positions", choices=POSITIONS, help="default: each preset's own")
    parser.add_argument("--grid", default="", help="the calibration's strengths, a comma list")
    args = parser.parse_args()
    lm = load_model(args.model)
    # the kind's readout for the method unless one is named (a trained fit reads the persona)
    changes = {"method": args.method} | ({"readout": args.readout} if args.readout else {})
    config = fit_config_on_grid(lm.effective_kind, args.grid, **changes)
    settings = SteerSettings(positions=args.positions) if args.positions else SteerSettings()
    dev = args.prompts == "dev"
    prompts = read_queries(ASSETS / "dev_prompts.txt").queries if dev else tuning_prompts()
    out: dict = {"model": lm.model_id, "kind": lm.effective_kind, "prompts": args.prompts,
                 "n_prompts": len(prompts), "shipped": args.shipped, "readout": config.readout,
                 "method": config.method, "pairs": asdict(config.pairs),
                 "positions": args.positions, "grid": args.grid, "axes": {}}  # fmt: skip
    for name in args.axes:
        judge = PRESET_JUDGES[name]
        started = time.perf_counter()
        if args.shipped:
            pack = AxisPack.load(prefitted_path(name, args.model), lm)
        else:
            pack = fit_axis(lm, preset(name), config=config, settings=settings)
            if args.save is not None:
                pack.save(args.save / f"{name}.safetensors")
        fit_seconds = round(time.perf_counter() - started, 1)
        rule = pack.fitted_rule()
        cells_asked = EvalConfig(
            strengths=(-1.0, 1.0), rules=(rule,), judges=(judge,), prompted=dev
        )
        report = evaluate(lm, pack, prompts, cells_asked)
        base = report.base_fluency
        cells = {}
        for cell in report.cells:
            key = f"{'prompted' if cell.rule == 'prompted' else 'steered'} {cell.strength:+g}"
            cells[key] = judged(cell, judge, base.perplexity)
            print(f"{name} {key}: {cells[key]}", flush=True)
        edge = pack.calibration
        out["axes"][name] = {
            "judge": judge,
            "readout": pack.fit_config.get("readout"),
            "rule": rule,
            "band": pack.fitted_band(),
            "fit_seconds": fit_seconds,
            "timings": {k: round(v, 1) for k, v in pack.timings.items()},
            "edges": [edge.positive, edge.negative] if edge else None,
            "held_out_losses": pack.training.held_out_losses if pack.training else None,
            "base_score": round(report.base_scores[judge], 3),
            "base_looping": base.degenerate,
            "base_perplexity": round(base.perplexity, 3),
            "cells": cells,
        }
        summary = out["axes"][name]
        print(f"{name}: ±1 = c {summary['edges']}, fit {fit_seconds} s, base "
              f"{summary['base_score']}, {base.degenerate} looping", flush=True)  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
