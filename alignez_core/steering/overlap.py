"""How much two axes' subspaces overlap per layer (docs/method.md §9): overlapping sliders fight."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignez_core.axes.pack import AxisPack
from alignez_core.errors import PackError


@dataclass(frozen=True)
class LayerOverlap:
    layer: int
    principal_cosines: tuple[float, ...]  # cosines of the principal angles, largest first
    mean_direction_cosine: float  # cosine between the two axes' mean differences

    @property
    def max_cosine(self) -> float:
        return self.principal_cosines[0] if self.principal_cosines else 0.0


def subspace_overlap(a: AxisPack, b: AxisPack) -> list[LayerOverlap]:
    """Per layer: principal-angle cosines between span Θ_a and span Θ_b, and mean-diff cosine."""
    if a.hidden_size != b.hidden_size or a.num_layers != b.num_layers:
        raise PackError(f"Axes {a.name!r} and {b.name!r} were fitted on different model shapes.")
    result = []
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        if la.rank and lb.rank:
            cosines = torch.linalg.svdvals(la.basis.double() @ lb.basis.double().T).clamp(0, 1)
            principal = tuple(float(c) for c in cosines)
        else:
            principal = ()
        ma, mb = la.mean_difference.double(), lb.mean_difference.double()
        denom = float(ma.norm() * mb.norm())
        mean_cos = float(ma @ mb) / denom if denom > 0 else 0.0
        result.append(LayerOverlap(i, principal, mean_cos))
    return result
