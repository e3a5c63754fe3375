"""Other directions from the same pairs: does a base model steer further along them?

A pack's direction is the mean difference between its positive and negative answers, each read
as the mean over its tokens. On Gemma 3 270M the gloomy side of cheerful barely moves. This
study builds other directions from the shipped pack's own pairs and steers each beside the
shipped one at the same strengths c (units of each edited layer's residual norm), with the
`mean_diff` rule on the pack's band, on the tuning prompts (never fit, never dev):

- `one-sided`: each sign along its own pole's offset from the model's plain greedy answer to
  each fit query: −1 along mean(negative) − mean(plain), +1 along mean(positive) − mean(plain);
- `opening`: both answers of a pair read on their first 4 words only, where an answer's tone
  is set and both have one length;
- `matched`: both answers of a pair cut to the shorter one's word count, so that the difference
  carries no length.

    python bench/base_directions.py [--model gemma3-270m] [--axes cheerful simple]
                                    [--variants one-sided opening matched] [--prompts 70]
                                    [--scales 0.01 0.02 0.03]

Prints one line per cell, then one JSON object as its last line, with up to 3 looping answers
per cell (docs/base-directions.log).
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
from alignez_core.measure.judges import PRESET_JUDGES, degenerate

OPENING_WORDS = 4
VARIANTS = ("one-sided", "opening", "matched")


def with_direction(pack: AxisPack, direction: torch.Tensor) -> AxisPack:
    """The pack with each layer's mean difference replaced by `direction` (L × d)."""
    layers = [
        replace(layer, mean_difference=direction[i].float()) for i, layer in enumerate(pack.layers)
    ]
    return replace(pack, layers=layers)


def read(lm: LoadedModel, pack: AxisPack, queries: list[str], answers: list[str]) -> torch.Tensor:
    """Each answer read as the pack reads its pairs (pooling, site): (n, L, d)."""
    return answer_embeddings(lm, queries, answers, pack.pooling, pack.site, 16).double()


def one_sided(pack: AxisPack, lm: LoadedModel, plain: torch.Tensor, positive: bool) -> AxisPack:
    """Each layer's direction is one pole's offset from the plain answers, oriented so that the
    pole's sign moves toward it."""
    queries = [p.query for p in pack.pairs]
    answers = [p.positive if positive else p.negative for p in pack.pairs]
    offset = read(lm, pack, queries, answers).mean(0) - plain.mean(0)
    return with_direction(pack, offset if positive else -offset)


def cut_pairs(pack: AxisPack, lm: LoadedModel, words: int | None) -> AxisPack:
    """Both answers of each pair cut to `words` words, or (None) to the shorter one's count."""
    queries = [p.query for p in pack.pairs]
    cut = []
    for p in pack.pairs:
        positive, negative = p.positive.split(), p.negative.split()
        keep = words or min(len(positive), len(negative))
        cut.append((" ".join(positive[:keep]), " ".join(negative[:keep])))
    difference = read(lm, pack, queries, [c[0] for c in cut]) - read(
        lm, pack, queries, [c[1] for c in cut]
    )
    return with_direction(pack, difference.mean(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--axes", nargs="+", default=["cheerful"], choices=tuple(PRESET_JUDGES))
    parser.add_argument("--variants", nargs="+", default=["one-sided"], choices=VARIANTS)
    parser.add_argument("--prompts", type=int, default=70, help="the first N tuning prompts")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.02, 0.03])
    parser.add_argument("--rules", nargs="+", default=["mean_diff"])
    args = parser.parse_args()
    lm = load_model(args.model)
    prompts = tuning_prompts()[: args.prompts]
    out: dict = {"model": lm.model_id, "kind": lm.effective_kind, "n_prompts": len(prompts),
                 "scales": args.scales, "rules": args.rules, "variants": args.variants,
                 "axes": {}}  # fmt: skip
    for name in args.axes:
        judge = PRESET_JUDGES[name]
        started = time.perf_counter()
        pack = AxisPack.load(prefitted_path(name, args.model), lm)
        packs = {"two-sided": (pack, (-1.0, 1.0))}
        plain_texts: list[str] = []
        if "one-sided" in args.variants:
            queries = [p.query for p in pack.pairs]
            greedy = generate_rows(lm, [Row(q) for q in queries], SamplingConfig())
            plain_texts = [r.text.strip() for r in greedy]  # as pairs are kept
            plain = read(lm, pack, queries, plain_texts)
            packs["one-sided −"] = (one_sided(pack, lm, plain, positive=False), (-1.0,))
            packs["one-sided +"] = (one_sided(pack, lm, plain, positive=True), (1.0,))
        if "opening" in args.variants:
            packs["opening"] = (cut_pairs(pack, lm, OPENING_WORDS), (-1.0, 1.0))
        if "matched" in args.variants:
            packs["matched"] = (cut_pairs(pack, lm, None), (-1.0, 1.0))
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
                        looping = [t for t in cell.texts if degenerate(t)]
                        rows.append(row | {"looping_examples": looping[:3]})
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
