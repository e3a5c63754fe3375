"""One pole at a time: does a base model steer further toward a pole from its own plain answer?

A pack's direction is the mean difference between its positive and negative answers. On Gemma 3
270M the gloomy side of cheerful barely moves: its negative answers are short ("Bad for me!")
and the difference may be mostly the cheerful side. This study reads a third set of answers, the
model's plain greedy answer to each fit query, and steers each sign along its own pole's offset
from them: −1 along mean(negative) − mean(plain), +1 along mean(positive) − mean(plain). The
shipped pack's two-sided direction runs beside it at the same strengths c (units of each edited
layer's residual norm), on the same tuning prompts (never fit, never dev), on its own band.

    python bench/base_one_sided.py [--model gemma3-270m] [--axes cheerful simple]
                                   [--prompts 70] [--scales 0.01 0.02 0.03]
                                   [--rules mean_diff subspace]

Prints one line per cell, then one JSON object as its last line (docs/base-one-sided.log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base_strength import judged
from tune_studies import tuning_prompts

from alignez_core import load_model
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_path
from alignez_core.engine.activations import answer_embeddings
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.evaluation.evaluate import EvalConfig, evaluate
from alignez_core.measure.judges import PRESET_JUDGES


def one_sided(pack: AxisPack, lm: LoadedModel, plain: torch.Tensor, positive: bool) -> AxisPack:
    """The pack with each layer's direction replaced by one pole's offset from the plain answers,
    oriented so that the pole's sign moves toward it."""
    queries = [p.query for p in pack.pairs]
    answers = [p.positive if positive else p.negative for p in pack.pairs]
    pole = answer_embeddings(lm, queries, answers, pack.pooling, pack.site, 16)
    offset = pole.double().mean(0) - plain.double().mean(0)  # (L, d)
    oriented = offset if positive else -offset
    layers = [
        replace(layer, mean_difference=oriented[i].float()) for i, layer in enumerate(pack.layers)
    ]
    return replace(pack, layers=layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--axes", nargs="+", default=["cheerful"], choices=tuple(PRESET_JUDGES))
    parser.add_argument("--prompts", type=int, default=70, help="the first N tuning prompts")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.02, 0.03])
    parser.add_argument("--rules", nargs="+", default=["mean_diff"])
    args = parser.parse_args()
    lm = load_model(args.model)
    prompts = tuning_prompts()[: args.prompts]
    out: dict = {"model": lm.model_id, "kind": lm.effective_kind, "n_prompts": len(prompts),
                 "scales": args.scales, "rules": args.rules, "axes": {}}  # fmt: skip
    for name in args.axes:
        judge = PRESET_JUDGES[name]
        started = time.perf_counter()
        pack = AxisPack.load(prefitted_path(name, args.model), lm)
        queries = [p.query for p in pack.pairs]
        greedy = generate_rows(lm, [Row(q) for q in queries], SamplingConfig())
        plain_texts = [r.text for r in greedy]
        plain = answer_embeddings(lm, queries, plain_texts, pack.pooling, pack.site, 16)
        packs = {
            "two-sided": (pack, (-1.0, 1.0)),
            "one-sided −": (one_sided(pack, lm, plain, positive=False), (-1.0,)),
            "one-sided +": (one_sided(pack, lm, plain, positive=True), (1.0,)),
        }
        cosines = {
            label: [
                round(float(torch.nn.functional.cosine_similarity(
                    layer.mean_difference, base_layer.mean_difference, dim=0)), 3)
                for layer, base_layer in zip(p.layers, pack.layers, strict=True)
            ]
            for label, (p, _) in packs.items() if p is not pack
        }  # fmt: skip
        print(f"{name}: cosine with the two-sided direction per layer {cosines}", flush=True)
        rows = []
        base_score = None
        for scale in args.scales:
            for label, (steered, strengths) in packs.items():
                asked = EvalConfig(strengths=strengths, rules=tuple(args.rules),
                                   judges=(judge,), scale=scale)  # fmt: skip
                report = evaluate(lm, steered, prompts, asked)
                base_score = round(report.base_scores[judge], 3)
                for rule in args.rules:
                    for strength in strengths:
                        cell = report.cell(rule, strength)
                        row = {"c": scale, "direction": label, "rule": rule,
                               "sign": int(strength),
                               **judged(cell, judge, report.base_fluency.perplexity)}  # fmt: skip
                        rows.append(row)
                        print(f"{name} {row}", flush=True)
        out["axes"][name] = {
            "judge": judge,
            "band": pack.fitted_band(),
            "plain_answers": plain_texts,
            "cosines": cosines,
            "base_score": base_score,
            "seconds": round(time.perf_counter() - started, 1),
            "rows": rows,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
