"""Data behind the studio's plots: why an answer moved, computed here, drawn by the UI."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignez_core.axes.pack import AxisPack
from alignez_core.axes.selection import layer_scores
from alignez_core.engine.activations import query_embeddings
from alignez_core.engine.model import LoadedModel
from alignez_core.steering import SteerSettings, axis_edit


@dataclass(frozen=True)
class LayerReport:
    """Per-layer scores for one prompt and the layers the edit actually uses."""

    scores: list[float]
    edited_layers: list[int]


def layer_report(
    lm: LoadedModel, prompt: str, pack: AxisPack, strength: float, settings: SteerSettings
) -> LayerReport:
    query = query_embeddings(lm, [prompt], pack.pooling, pack.site)[0]  # type: ignore[arg-type]
    toward_positive = strength >= 0
    scores = [c.score for c in layer_scores(query, pack.layers, toward_positive)]
    used = axis_edit(pack, strength, query, settings).layers if strength else ()
    return LayerReport(scores, list(used))


def project(pack: AxisPack, layer: int, states: torch.Tensor) -> torch.Tensor:
    """(T, d) states → (T, 2) coordinates on the layer's top-2 directions."""
    return states.float() @ pack.top2(layer).T


def explained_per_layer(pack: AxisPack) -> list[float]:
    return [layer.explained for layer in pack.layers]


def best_layer(pack: AxisPack) -> int:
    """A good default layer to look at: highest rank·pairs kept, mid-network on ties."""
    middle = pack.num_layers // 2
    return max(
        range(pack.num_layers),
        key=lambda i: (pack.layers[i].pairs_kept * min(pack.layers[i].rank, 2), -abs(i - middle)),
    )
