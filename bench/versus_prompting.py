"""Steering against the prompting baseline, prompt by prompt, from `make results`' JSON.

For each axis at slider ±1: the default rule's answers and the prompted answers (the pole asked
for in words, no edit) were written for the same 24 dev prompts, so their judge scores pair up.
Prints the paired difference (steered − prompted) with a 95 % bootstrap interval, and each side's
fluency, so "beats or equals prompting at equal or better fluency" is read from one interval
rather than from two overlapping ones; then the same for the trained rows ('trained mean_diff',
`bench/results.py`) against the mean-difference rows they were trained from, where the JSON has
them.

    python bench/versus_prompting.py [docs/results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alignez_core.axes.axis import preset  # noqa: E402
from alignez_core.evaluation.evaluate import paired_difference  # noqa: E402
from alignez_core.measure.judges import PRESET_DIRECTIONS, make_judge  # noqa: E402

TRAINED = "trained mean_diff"  # training trains the vector the mean_diff rule adds


def _cell(cells: list[dict], rule: str, strength: float) -> dict:
    return next(c for c in cells if c["rule"] == rule and c["strength"] == strength)


def _fluency(cell: dict, base_perplexity: float, n: int) -> str:
    fluency = cell["fluency"]
    return f"{fluency['degenerate']}/{n}, {fluency['perplexity'] / base_perplexity:.2f}×"


def versus(data: dict, name: str, other: str = "prompted", mine: str | None = None) -> list[str]:
    """Markdown rows for one axis: `mine`'s rows (default: the pack's own rule) − `other`'s at −1
    and +1, paired over prompts (`other`: "prompted", or another row such as "trained
    mean_diff")."""
    report = data[name]
    rule, judge_name = mine or report["config"]["rules"][0], report["config"]["judges"][0]
    if not all(any(c["rule"] == r for c in report["cells"]) for r in (rule, other)):
        return []
    judge = make_judge(judge_name, preset(name))
    n, base_ppl = report["n_prompts"], report["base"]["fluency"]["perplexity"]
    rows = []
    for strength in (-1.0, 1.0):
        steered = _cell(report["cells"], rule, strength)
        asked = _cell(report["cells"], other, strength)
        config = report["config"]
        diff = paired_difference(
            judge, steered["texts"], asked["texts"], config["bootstrap"], config["seed"]
        )
        # toward the pole the slider names: the way +1 moves this judge, times the slider's sign
        # (not the steered shift's own sign, which points the wrong way when steering does)
        toward = strength * PRESET_DIRECTIONS[name]
        ends = sorted((toward * diff.low, toward * diff.high))
        ours, theirs = ("steering", "prompting") if other == "prompted" else (rule, other)
        verdict = (
            f"{ours} further"
            if ends[0] > 0
            else f"{theirs} further"
            if ends[1] < 0
            else "not distinguishable"
        )
        rows.append(
            f"| {name} ({judge_name}) | {strength:+g} | "
            f"{steered['difference_vs_base'][judge_name]['mean']:+.3f} "
            f"({_fluency(steered, base_ppl, n)}) | "
            f"{asked['difference_vs_base'][judge_name]['mean']:+.3f} "
            f"({_fluency(asked, base_ppl, n)}) | "
            f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] | {verdict} |"
        )
    return rows


def table(data: dict, other: str = "prompted") -> str:
    """Markdown: every axis of a results JSON at ±1, its own rule − the prompted rows, or with
    `other` "trained", the rows the trained pack came from (the axis's `trained_from`) − the
    trained rows."""
    rows = []
    for name, report in data.items():
        if name == "composition":
            continue
        if other == "trained":
            rows += versus(data, name, TRAINED, report.get("trained_from"))
        else:
            rows += versus(data, name, other)
    if not rows:
        return ""
    mine, label = ("mean difference", "trained") if other == "trained" else ("own rule", other)
    return "\n".join([
        f"| axis (judge) | slider | {mine} Δ (looping, perplexity) | {label} Δ | "
        f"{mine} − {label}, paired [95 %] | which reaches further |",
        "|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "results.json"
    data = json.loads(path.read_text())
    print(table(data))
    if trained := table(data, "trained"):
        print(trained)


if __name__ == "__main__":
    main()
