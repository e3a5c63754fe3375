"""Every figure in README.md is the one a committed script wrote to a committed log: the results
table is recomputed from `docs/results.json` (`make results`) and the load times are read from
`docs/bench-cpu.log` (`make bench`). A hand-edited or stale number fails here."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RESULTS = json.loads((ROOT / "docs" / "results.json").read_text())
AXIS_OF_ROW = {"cheerful": "cheerful ↔ gloomy", "simple": "simple ↔ technical",
               "concise": "concise ↔ verbose"}  # fmt: skip
DECIMALS = {"cheerful": 2, "simple": 2, "concise": 1}  # words move by whole words, not hundredths


def table_row(axis: str) -> list[str]:
    label = AXIS_OF_ROW[axis]
    line = next(x for x in README.splitlines() if x.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def cell(report: dict, rule: str, strength: float) -> dict:
    return next(c for c in report["cells"] if c["rule"] == rule and c["strength"] == strength)


def steered_text(report: dict, strength: float, digits: int, bold: bool) -> str:
    """How the README writes the default rule's shift at one slider end."""
    rule, judge = report["config"]["rules"][0], report["config"]["judges"][0]
    shown = cell(report, rule, strength)
    shift = shown["difference_vs_base"][judge]
    mean = f"{shift['mean']:+.{digits}f}".replace("-", "−")
    if bold:
        mean = f"**{mean}** [{shift['low']:+.{digits}f}, {shift['high']:+.{digits}f}]".replace(
            "-", "−"
        )
    ratio = shown["fluency"]["perplexity"] / report["base"]["fluency"]["perplexity"]
    return f"{mean}, {shown['fluency']['degenerate']}/{report['n_prompts']}, {ratio:.2f}×"


@pytest.mark.parametrize("axis", sorted(AXIS_OF_ROW))
def test_readme_results_row_is_what_make_results_wrote(axis):
    report, digits = RESULTS[axis], DECIMALS[axis]
    _, plus, minus, prompted = table_row(axis)
    # a cell is bold with its interval where the interval excludes 0, as README's table does
    for written, strength in ((plus, 1.0), (minus, -1.0)):
        judge = report["config"]["judges"][0]
        shift = cell(report, report["config"]["rules"][0], strength)["difference_vs_base"][judge]
        bold = shift["low"] > 0 or shift["high"] < 0
        unlabelled = written.replace(" loop,", ",").replace("× ppl", "×")  # the first row's labels
        assert unlabelled == steered_text(report, strength, digits, bold), (axis, strength)
    asked = [
        cell(report, "prompted", s)["difference_vs_base"][report["config"]["judges"][0]]["mean"]
        for s in (1.0, -1.0)
    ]
    assert prompted == " / ".join(f"{a:+.{digits}f}".replace("-", "−") for a in asked)


def bench_entries() -> list[dict]:
    lines = (ROOT / "docs" / "bench-cpu.log").read_text().splitlines()
    return [json.loads(x) for x in lines if x.startswith("{")]


def test_readme_load_times_are_the_latest_bench_log():
    """README's "~N s" for the first (GGUF) load and for a cached load: `make bench`'s last run."""
    match = re.search(r"dequantizes it \(~(\d+) s\).*?later\s+loads take ~(\d+(?:\.\d+)?) s",
                      README, re.S)  # fmt: skip
    assert match, "README no longer states the load times"
    first, cached = float(match.group(1)), float(match.group(2))
    latest = [e for e in bench_entries() if "load_gguf_seconds" in e][-1]
    assert round(latest["load_gguf_seconds"]) == first, latest["load_gguf_seconds"]
    digits = 1 if cached < 1 else 0
    assert round(latest["load_cache_seconds"], digits) == cached, latest["load_cache_seconds"]
