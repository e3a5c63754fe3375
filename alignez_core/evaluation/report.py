"""Evaluation reports as figures (plotly) and markdown tables; no UI framework here."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .evaluate import EvalReport

RULE_COLORS = {
    "subspace": "#6366f1",
    "project": "#16a34a",
    "tanh": "#f59e0b",
    "mean_diff": "#dc2626",
    "prompted": "#0ea5e9",
}


def _series(report: EvalReport, rule: str, value) -> tuple[list[float], list[float]]:
    cells = sorted((c for c in report.cells if c.rule == rule), key=lambda c: c.strength)
    xs = [c.strength for c in cells]
    return xs, [value(c) for c in cells]


def eval_figure(report: EvalReport) -> go.Figure:
    """Per judge: mean shift vs base (with 95 % CI) against strength, one line per rule; then
    perplexity and distinct-2 against strength."""
    judges = list(report.base_scores)
    fig = make_subplots(
        rows=1,
        cols=len(judges) + 2,
        subplot_titles=[f"Δ {j} vs base" for j in judges] + ["perplexity", "distinct-2"],
    )
    rules = list(dict.fromkeys(c.rule for c in report.cells))
    for rule in rules:
        color = RULE_COLORS.get(rule, "#6b7280")
        for col, judge in enumerate(judges, start=1):
            xs, ys = _series(report, rule, lambda c, j=judge: c.differences[j].mean)
            _, lo = _series(report, rule, lambda c, j=judge: c.differences[j].low)
            _, hi = _series(report, rule, lambda c, j=judge: c.differences[j].high)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name=rule,
                    legendgroup=rule,
                    showlegend=col == 1,
                    line=dict(color=color),
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[h - y for h, y in zip(hi, ys, strict=True)],
                        arrayminus=[y - low for y, low in zip(ys, lo, strict=True)],
                    ),
                ),
                1,
                col,
            )
        for offset, metric in ((1, "perplexity"), (2, "distinct_2")):
            xs, ys = _series(report, rule, lambda c, m=metric: getattr(c.fluency, m))
            fig.add_trace(
                go.Scatter(x=xs, y=ys, name=rule, legendgroup=rule, showlegend=False,
                           line=dict(color=color)),
                1,
                len(judges) + offset,
            )  # fmt: skip
    for offset, metric in ((1, "perplexity"), (2, "distinct_2")):
        fig.add_hline(
            y=getattr(report.base_fluency, metric), line_dash="dot", row=1,
            col=len(judges) + offset,
        )  # fmt: skip
    fig.update_xaxes(title_text="strength")
    fig.update_layout(
        title=f"{report.axis} on {report.model_id} ({len(report.prompts)} prompts)",
        height=380,
        margin=dict(t=70, l=40, r=10, b=40),
    )
    return fig


def _interval(value) -> str:
    return f"{value.mean:+.3f} [{value.low:+.3f}, {value.high:+.3f}]"


def markdown_table(report: EvalReport) -> str:
    """One row per rule × strength: judge shifts with 95 % CI, then fluency."""
    judges = list(report.base_scores)
    head = ["rule", "strength", *[f"Δ {j} [95% CI]" for j in judges], "ppl", "distinct-2",
            "repetition", "refusal", "degenerate"]  # fmt: skip
    base = report.base_fluency
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| base | 0 | "
        + " | ".join(f"{report.base_scores[j]:.3f} (mean)" for j in judges)
        + f" | {base.perplexity:.2f} | {base.distinct_2:.3f} | {base.repetition:.2f} | "
        f"{base.refusal_rate:.2f} | {base.degenerate}/{len(report.prompts)} |",
    ]
    for c in sorted(report.cells, key=lambda c: (c.rule, c.strength)):
        shifts = " | ".join(_interval(c.differences[j]) for j in judges)
        f = c.fluency
        lines.append(
            f"| {c.rule} | {c.strength:+g} | {shifts} | {f.perplexity:.2f} | {f.distinct_2:.3f} "
            f"| {f.repetition:.2f} | {f.refusal_rate:.2f} | {f.degenerate}/{len(c.texts)} |"
        )
    return "\n".join(lines)
