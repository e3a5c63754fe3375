"""The alignment subspace of one layer from pair differences, by SVD (docs/method.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SubspaceConfig:
    """The choices of docs/method.md §4, with their defaults."""

    max_pair_cosine: float = 0.8  # drop a pair whose two embeddings are more similar than this
    # ... measured after subtracting the layer's mean embedding (over both poles of every pair).
    # The residual stream carries a large component common to every text (cos ≈ 1 between any
    # two answers), so a raw cosine filter would drop every pair there.
    center: bool = True
    explained_variance: float = 0.9  # keep the smallest k explaining this share of Σ²
    max_rank: int = 10  # ... but never more than this
    orient: bool = True  # flip each θ so it points from the negative pole to the positive one


@dataclass(frozen=True)
class LayerSubspace:
    """One layer's directions Θ_l (k × d, orthonormal rows) and what the UI plots about it."""

    basis: torch.Tensor  # (k, d)
    singular_values: torch.Tensor  # (min(K, d),) full spectrum of the kept differences
    mean_difference: torch.Tensor  # (d,) mean of Φ(pos) − Φ(neg) over kept pairs
    pairs_kept: int
    pairs_total: int

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])

    @property
    def explained(self) -> float:
        """Share of Σ² carried by the kept directions."""
        energy = self.singular_values.pow(2)
        total = float(energy.sum())
        return float(energy[: self.rank].sum()) / total if total > 0 else 0.0


def fit_layer_subspace(
    positive: torch.Tensor, negative: torch.Tensor, config: SubspaceConfig = SubspaceConfig()
) -> LayerSubspace:
    """Θ_l from (K, d) positive and negative embeddings of the same K queries."""
    positive, negative = positive.double(), negative.double()
    dim = positive.shape[-1]
    offset = torch.cat([positive, negative]).mean(0) if config.center else 0.0
    similarity = F.cosine_similarity(positive - offset, negative - offset, dim=-1)
    keep = similarity <= config.max_pair_cosine
    differences = (positive - negative)[keep]
    if differences.shape[0] == 0:
        return LayerSubspace(
            torch.zeros(0, dim), torch.zeros(0), torch.zeros(dim), 0, positive.shape[0]
        )
    _, sigma, vh = torch.linalg.svd(differences, full_matrices=False)
    energy = sigma.pow(2)
    share = energy.cumsum(0) / energy.sum().clamp_min(1e-30)
    rank = int((share < config.explained_variance).sum()) + 1
    rank = max(1, min(rank, config.max_rank, int((sigma > sigma[0] * 1e-6).sum())))
    basis = vh[:rank]
    mean = differences.mean(0)
    if config.orient:
        signs = torch.where(basis @ mean >= 0, 1.0, -1.0).to(basis.dtype)
        basis = basis * signs[:, None]
    return LayerSubspace(
        basis=basis.float(),
        singular_values=sigma.float(),
        mean_difference=mean.float(),
        pairs_kept=int(keep.sum()),
        pairs_total=int(positive.shape[0]),
    )
