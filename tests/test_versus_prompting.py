"""bench/versus_prompting.py reads make results' JSON and pairs steered with prompted answers."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cell(rule, strength, texts, shift):
    return {
        "rule": rule,
        "strength": strength,
        "texts": texts,
        "difference_vs_base": {"words": {"mean": shift}},
        "fluency": {"perplexity": 2.0, "degenerate": 0},
    }


def test_the_verdict_comes_from_the_paired_interval(tmp_path):
    n = 12
    short, mid, long = ["one two"] * n, ["one two three four"] * n, ["w " * 30] * n
    mixed = ["one"] * (n // 2) + ["one two three four five six seven"] * (n // 2)
    report = {
        "n_prompts": n,
        "config": {"rules": ["mean_diff"], "judges": ["words"], "bootstrap": 500, "seed": 0},
        "base": {"fluency": {"perplexity": 2.0}},
        "cells": [
            _cell("mean_diff", 1.0, short, -10.0),  # steering 2 words against prompting's 30
            _cell("prompted", 1.0, long, -28.0),
            _cell("mean_diff", -1.0, mixed, +2.0),  # 1 or 7 words against 4: a wash
            _cell("prompted", -1.0, mid, +2.0),
            _cell("trained mean_diff", 1.0, long, -2.0),  # the trained rows: behind, then a wash
            _cell("trained mean_diff", -1.0, mixed, +2.0),
        ],
    }
    path = tmp_path / "results.json"
    # simple's +1 lowers its judge, as concise's does: at +1 steering shortens by 2 words and
    # prompting by 28 (behind); at -1 steering shortens by 2 words, the wrong way, where prompting
    # lengthens by 2 (behind too, though steering moved as far)
    behind = report | {"cells": [
        _cell("mean_diff", 1.0, ["w " * 28] * n, -2.0), _cell("prompted", 1.0, short, -28.0),
        _cell("mean_diff", -1.0, short, -2.0), _cell("prompted", -1.0, mid, +2.0),
    ]}  # fmt: skip
    # a base model's axis steers with subspace; its trained rows come from a persona fit and are
    # compared with that fit's mean_diff rows (its `trained_from`), not with the subspace rows
    base = report | {
        "config": report["config"] | {"rules": ["subspace"]},
        "trained_from": "persona mean_diff",
        "cells": [
            _cell("subspace", 1.0, mid, 0.0), _cell("subspace", -1.0, mid, 0.0),
            _cell("prompted", 1.0, mid, 0.0), _cell("prompted", -1.0, mid, 0.0),
            _cell("persona mean_diff", 1.0, long, 26.0), _cell("persona mean_diff", -1.0, mid, 0.0),
            _cell("trained mean_diff", 1.0, short, -2.0),
            _cell("trained mean_diff", -1.0, mid, 0.0),
        ],
    }  # fmt: skip
    path.write_text(
        json.dumps({"concise": report, "simple": behind, "cheerful": base, "composition": {}})
    )
    out = subprocess.run(
        [sys.executable, "bench/versus_prompting.py", str(path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    prompted, trained = out.split("mean difference − trained")
    verdicts = {
        (cells[1].split()[0], cells[2].strip(), *(["trained"] if part is trained else [])): cells[
            -2
        ].strip()
        for part in (prompted, trained)
        for line in part.splitlines()
        if (cells := line.split("|"))[1].strip().startswith(("concise", "simple", "cheerful"))
    }
    assert verdicts == {
        ("concise", "+1"): "steering further",
        ("concise", "-1"): "not distinguishable",
        ("simple", "+1"): "prompting further",
        ("simple", "-1"): "prompting further",
        ("concise", "+1", "trained"): "mean_diff further",
        ("concise", "-1", "trained"): "not distinguishable",
        ("cheerful", "+1"): "not distinguishable",
        ("cheerful", "-1"): "not distinguishable",
        ("cheerful", "+1", "trained"): "persona mean_diff further",
        ("cheerful", "-1", "trained"): "not distinguishable",
    }
