import json

import pytest

from alignez_core.errors import AlignEZError, PackError
from alignez_core.evaluation.evaluate import EvalConfig, bootstrap_interval, evaluate
from alignez_core.evaluation.report import eval_figure, markdown_table
from tests.tiny import make_model

CONFIG = EvalConfig(strengths=(-4.0, 0.0, 4.0), rules=("subspace", "mean_diff"),
                    judges=("words", "tone"),
                    max_new_tokens=8, bootstrap=200)  # fmt: skip
PROMPTS = ["hello", "tell me more", "why?"]


@pytest.fixture(scope="module")
def report(tiny_llama, tiny_pack):
    return evaluate(tiny_llama, tiny_pack, PROMPTS, CONFIG)


def test_strength_zero_reproduces_base_exactly(report):
    for rule in CONFIG.rules:
        assert report.cell(rule, 0.0).texts == report.base_texts
        assert report.cell(rule, 0.0).differences["words"].mean == 0.0


def test_every_rule_and_strength_is_judged_and_edits_change_text(report):
    assert len(report.cells) == len(CONFIG.rules) * len(CONFIG.strengths)
    moved = [c for c in report.cells if c.strength != 0 and c.texts != report.base_texts]
    assert moved  # at ±4 at least one rule changes the answers
    for cell in report.cells:
        d = cell.differences["tone"]
        assert d.low <= d.mean <= d.high
        assert cell.fluency.perplexity > 0 and 0 <= cell.fluency.distinct_2 <= 1


def test_report_serialises_tabulates_and_plots(report):
    data = json.loads(json.dumps(report.to_dict(texts=True)))
    assert data["cells"][0]["difference_vs_base"]["words"].keys() == {"mean", "low", "high"}
    table = markdown_table(report)
    assert table.count("\n") == 2 + len(report.cells)  # header, rule, base, one per cell
    figure = eval_figure(report)
    assert len(figure.data) == len(CONFIG.rules) * (len(CONFIG.judges) + 2)


def test_bootstrap_interval_brackets_a_clear_shift():
    interval = bootstrap_interval([1.0, 1.2, 0.9, 1.1, 1.0, 0.8], rounds=500, seed=0)
    assert 0.8 < interval.low < interval.mean < interval.high < 1.2


def test_bad_evaluation_input(tiny_llama, tiny_pack):
    with pytest.raises(AlignEZError, match="prompt list is empty"):
        evaluate(tiny_llama, tiny_pack, ["", "  "], CONFIG)
    with pytest.raises(AlignEZError, match="Unknown rule"):
        EvalConfig(rules=("magic",))
    with pytest.raises(PackError, match="hidden size 64"):
        evaluate(make_model(hidden=96), tiny_pack, PROMPTS, CONFIG)
