"""Plotly figures for the studio: projection, spectrum + layer scores, axis overlap."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from alignez_core.axes.pack import AxisPack
from alignez_core.steering.explain import LayerReport, explained_per_layer, project
from alignez_core.steering.overlap import subspace_overlap

POSITIVE, NEGATIVE, BASE, EDITED, PROMPTED = "#16a34a", "#dc2626", "#6b7280", "#6366f1", "#d97706"


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=320, margin=dict(t=30))
    return fig


ANSWER_COLORS = {"base": BASE, "edited": EDITED, "prompted": PROMPTED}


def projection_figure(
    pack: AxisPack | None,
    layer: int,
    traces: dict[str, torch.Tensor] | None = None,
    trajectory: bool = False,
) -> go.Figure:
    """The pairs on the layer's top-2 directions (a cloud per pole, its centre marked) and where
    each answer's tokens sit: their mean with one standard deviation each way, or (`trajectory`)
    every token in order."""
    if pack is None:
        return _empty("Fit an axis to see its pairs here.")
    if not pack.pair_coords or pack.layers[layer].rank == 0:
        return _empty(f"Layer {layer} kept no pairs for {pack.name!r}: pick another layer.")
    coords = pack.pair_coords[layer]
    half = coords.shape[0] // 2
    hover = [p.query for p in pack.pairs]
    fig = go.Figure()
    for label, points, color in (
        (pack.axis.positive, coords[:half], POSITIVE),
        (pack.axis.negative, coords[half:], NEGATIVE),
    ):
        fig.add_trace(
            go.Scatter(
                x=points[:, 0].tolist(), y=points[:, 1].tolist(), mode="markers",
                name=f"pairs: {label}", marker=dict(color=color, size=7, opacity=0.35),
                text=hover, hovertemplate="%{text}<extra>" + label + "</extra>",
            )
        )  # fmt: skip
        centre = points.mean(0)
        fig.add_trace(
            go.Scatter(
                x=[float(centre[0])], y=[float(centre[1])], mode="markers+text",
                name=f"pole: {label}", text=[label], textposition="top center",
                marker=dict(color=color, size=16, symbol="x"),
            )
        )  # fmt: skip
    for name, states in (traces or {}).items():
        if not isinstance(states, torch.Tensor) or states.numel() == 0:
            continue
        color = ANSWER_COLORS.get(name, BASE)
        xy = project(pack, layer, states)
        if trajectory:
            fig.add_trace(
                go.Scatter(
                    x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="lines+markers",
                    name=f"{name} answer (tokens in order)", line=dict(color=color, width=1),
                    marker=dict(color=color, size=4),
                )
            )  # fmt: skip
            continue
        mean = xy.mean(0)
        spread = xy.std(0) if xy.shape[0] > 1 else torch.zeros(2)
        fig.add_trace(
            go.Scatter(
                x=[float(mean[0])], y=[float(mean[1])], mode="markers",
                name=f"{name} answer (mean ± sd over {xy.shape[0]} tokens)",
                marker=dict(color=color, size=15, symbol="diamond", line=dict(width=1)),
                error_x=dict(array=[float(spread[0])], color=color, thickness=2),
                error_y=dict(array=[float(spread[1])], color=color, thickness=2),
            )
        )  # fmt: skip
    fig.update_layout(
        title=f"{pack.name}: layer {layer} on its top-2 directions",
        xaxis_title="θ₁ (toward " + pack.axis.positive + ")",
        yaxis_title="θ₂",
        height=420,
        margin=dict(t=50, l=40, r=10, b=40),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def spectrum_figure(pack: AxisPack | None, report: LayerReport | None = None) -> go.Figure:
    """Rank k and explained variance per layer; the prompt's layer scores with edited layers."""
    if pack is None:
        return _empty("Fit an axis to see its per-layer spectrum.")
    layers = list(range(pack.num_layers))
    titles = ("rank k and explained variance", "this prompt's layer scores")
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, subplot_titles=titles
    )
    fig.add_trace(go.Bar(x=layers, y=pack.ranks(), name="rank k", marker_color=EDITED), 1, 1)
    explained = go.Scatter(
        x=layers,
        y=explained_per_layer(pack),
        name="explained (0–1)",
        mode="lines+markers",
        line=dict(color=POSITIVE),
    )
    fig.add_trace(explained, 1, 1)
    if report is not None:
        colors = [EDITED if i in report.edited_layers else BASE for i in layers]
        scores = go.Bar(
            x=layers, y=report.scores, name="score (edited in colour)", marker_color=colors
        )
        fig.add_trace(scores, 2, 1)
    fig.update_layout(height=420, margin=dict(t=50, l=40, r=10, b=40), xaxis2_title="layer",
                      legend=dict(orientation="h", y=-0.2))  # fmt: skip
    return fig


def overlap_figure(packs: Sequence[AxisPack]) -> go.Figure:
    """Per layer, the largest principal cosine between each pair of axes' subspaces."""
    if len(packs) < 2:
        return _empty("Fit two or more axes to see whether their sliders fight.")
    rows, labels = [], []
    for i, a in enumerate(packs):
        for b in packs[i + 1 :]:
            if a.hidden_size != b.hidden_size or a.num_layers != b.num_layers:
                continue
            rows.append([o.max_cosine for o in subspace_overlap(a, b)])
            labels.append(f"{a.name} × {b.name}")
    if not rows:
        return _empty("These axes were fitted on different models.")
    fig = go.Figure(
        go.Heatmap(z=rows, x=list(range(len(rows[0]))), y=labels, zmin=0, zmax=1,
                   colorscale="YlOrRd", colorbar=dict(title="overlap"))
    )  # fmt: skip
    fig.update_layout(
        title="Subspace overlap per layer (1 = same directions: the sliders fight)",
        xaxis_title="layer",
        height=160 + 40 * len(rows),
        margin=dict(t=50, l=40, r=10, b=40),
    )
    return fig
