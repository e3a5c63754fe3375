"""Sample-conditioned directions and layers (docs/method.md §5).

For a query q at layer l, Θ_l(q) keeps the directions q does not already express
(cos(Φ_l(q), θ) ≤ 0 for a push toward the positive pole; ≥ 0 toward the negative one), and layers
are ranked by score_l = ‖Σ_{θ∈Θ_l(q)} cos(Φ_l(q), θ)·θ‖.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignez_core.errors import EditError

from .subspace import LayerSubspace


@dataclass(frozen=True)
class LayerChoice:
    """Directions kept for one query at one layer, and that layer's score."""

    layer: int
    directions: torch.Tensor  # (k', d) rows of Θ_l(q)
    cosines: torch.Tensor  # (k',) cos(Φ_l(q), θ) of the kept rows
    score: float


def conditioned_directions(
    query: torch.Tensor, subspace: LayerSubspace, toward_positive: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Θ_l(q) and the cosines of its rows with Φ_l(q)."""
    basis = subspace.basis
    if basis.shape[0] == 0:
        return basis, torch.zeros(0)
    cosines = F.cosine_similarity(query.float()[None, :], basis, dim=-1)
    keep = cosines <= 0 if toward_positive else cosines >= 0
    return basis[keep], cosines[keep]


def layer_scores(
    query: torch.Tensor, layers: Sequence[LayerSubspace], toward_positive: bool = True
) -> list[LayerChoice]:
    """Every layer's Θ_l(q) and score (0 where nothing is kept)."""
    choices = []
    for index, subspace in enumerate(layers):
        directions, cosines = conditioned_directions(query[index], subspace, toward_positive)
        score = float((cosines[:, None] * directions).sum(0).norm()) if len(cosines) else 0.0
        choices.append(LayerChoice(index, directions, cosines, score))
    return choices


def select_layers(
    query: torch.Tensor,
    layers: Sequence[LayerSubspace],
    top_n: int | None = 5,
    pinned: Sequence[int] | None = None,
    toward_positive: bool = True,
    within: Sequence[int] | None = None,
) -> list[LayerChoice]:
    """Exactly the pinned layers; else, among `within` (all layers when None), the top-n by
    score (score > 0 only), or with `top_n` None every one of them."""
    choices = layer_scores(query, layers, toward_positive)
    if pinned is not None:
        bad = [i for i in pinned if not 0 <= i < len(layers)]
        if bad:
            raise EditError(f"Pinned layers {bad} are out of range: the axis has {len(layers)}.")
        return [choices[i] for i in sorted(set(pinned))]
    candidates = choices if within is None else [choices[i] for i in within if i < len(layers)]
    if top_n is None:
        return candidates
    ranked = sorted((c for c in candidates if c.score > 0), key=lambda c: c.score, reverse=True)
    return sorted(ranked[: max(0, top_n)], key=lambda c: c.layer)
