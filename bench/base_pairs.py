"""Can a base model write its own pairs? How each way of asking a pretrained model for a pole
does, by the share of pairs whose positive answer an independent judge places on the positive
side of the negative one.

Ways of asking, on the model's own frame (`Human: …⏎Assistant:`), greedy, 64 tokens:
- `insight`: an instruct model's default, two stages (`generate_pairs`: what a {pole}
  assistant's answer should do, then the answer conditioned on it);
- `persona`: the pole as an instruction before the query ("Act as a cheerful assistant. …"),
  which is what the persona readout reads;
- `opening`: the plain query, with the pole's words placed at the start of the answer ("As a
  cheerful assistant, I"); the judge reads only what the model wrote after them;
- `fewshot`: the persona instruction after one worked example of following a style instruction
  in a third, unrelated style (a pirate), so the frame shows what an instruction is for;
- `contrast`: a base model's default (`BASE_PAIRS`): 4 samples per pole asked by `persona`, and
  of each query's 8 answers the pair the model itself scores most and least like the positive
  pole (`contrast_scores`).

Judges: the pole judge (sentence-embedding similarity to the axis's anchor sentences) and the
axis's own judge (VADER for cheerful, Flesch–Kincaid grade for simple, where lower is simpler).

    python bench/base_pairs.py [--model gemma3-270m] [--queries 24]   # ~20 min here

Prints a table, then one JSON object as its last line (docs/base-pairs.log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignez_core import load_model, preset
from alignez_core.axes.axis import ASSETS, Axis
from alignez_core.axes.queries import read_queries
from alignez_core.engine import Row, SamplingConfig, generate_rows
from alignez_core.fitting.pairs import BASE_PAIRS, PairConfig, generate_pairs, persona_prompt
from alignez_core.measure.judges import PRESET_JUDGES, make_judge

AXES = {name: PRESET_JUDGES[name] for name in ("cheerful", "simple")}
# the sign of the axis judge's shift toward the positive pole
TOWARD_POSITIVE = {"tone": 1.0, "grade": -1.0}
EXAMPLE = (
    "Human: Act as a pirate. How are you today?\n"
    "Assistant: Arr, I be doin' fine, matey! The sea be calm and the rum be flowin'.\n\n"
)
SAMPLING = SamplingConfig(max_new_tokens=64)


def _answers(lm, texts: list[str]) -> list[str]:
    return [o.text.strip() for o in generate_rows(lm, [Row(t, raw=True) for t in texts], SAMPLING)]


def pole_answers(lm, axis: Axis, queries: list[str], way: str) -> tuple[list[str], list[str]]:
    """(positive answers, negative answers), one per query, asked `way`."""
    if way in ("insight", "contrast"):
        config = BASE_PAIRS if way == "contrast" else PairConfig()
        pairs = generate_pairs(lm, axis, queries, config)
        return [p.positive for p in pairs], [p.negative for p in pairs]
    sides = []
    for pole in (True, False):
        if way == "persona":
            texts = [lm.format_prompt(persona_prompt(axis, q, pole)) for q in queries]
        elif way == "fewshot":
            texts = [EXAMPLE + lm.format_prompt(persona_prompt(axis, q, pole)) for q in queries]
        else:  # opening
            texts = [lm.format_prompt(q, f"As a {axis.persona(pole)}, I") for q in queries]
        sides.append(_answers(lm, texts))
    return sides[0], sides[1]


def agreement(judge, positive: list[str], negative: list[str], sign: float) -> float:
    pos, neg = judge.score(positive), judge.score(negative)
    return sum(sign * (p - n) > 0 for p, n in zip(pos, neg, strict=True)) / len(pos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--ways", default="insight,persona,opening,fewshot,contrast")
    args = parser.parse_args()
    lm = load_model(args.model)
    queries = read_queries(ASSETS / "seed_queries.txt").queries[: args.queries]
    result: dict = {"model": lm.model_id, "queries": len(queries), "axes": {}}
    for name, own in AXES.items():
        axis = preset(name)
        pole, judge = make_judge("pole", axis), make_judge(own, axis)
        rows = {}
        for way in args.ways.split(","):
            started = time.perf_counter()
            positive, negative = pole_answers(lm, axis, queries, way)
            rows[way] = {
                "pole_agreement": round(agreement(pole, positive, negative, 1.0), 3),
                f"{own}_agreement": round(
                    agreement(judge, positive, negative, TOWARD_POSITIVE[own]), 3
                ),
                "seconds": round(time.perf_counter() - started, 1),
                "example": [positive[0][:160], negative[0][:160]],
            }
            print(name, way, {k: v for k, v in rows[way].items() if k != "example"}, flush=True)
        result["axes"][name] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
