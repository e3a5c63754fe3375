from dataclasses import replace

import torch

from alignez_core.axes.subspace import SubspaceConfig, fit_layer_subspace


def pairs_along(direction: torch.Tensor, n: int = 8, noise: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, direction.numel(), generator=g) * 0.1
    scale = torch.linspace(1, 2, n)[:, None]
    positive = base + scale * direction + noise * torch.randn(base.shape, generator=g)
    return positive, base


def test_recovers_the_difference_direction_oriented_to_the_positive_pole():
    direction = torch.zeros(16)
    direction[3] = 1.0
    positive, negative = pairs_along(direction)
    subspace = fit_layer_subspace(positive, negative)
    assert subspace.rank == 1
    assert float(subspace.basis[0] @ direction) > 0.99  # oriented, not just aligned
    assert subspace.pairs_kept == 8 and subspace.explained > 0.9


def test_orientation_flips_sign_not_span():
    """One pair moves far along +d, seven a little along −d: the mean difference (the way from
    the negative pole to the positive one) is −d, but the SVD's own sign follows the far pair;
    `orient` flips the direction to the mean's side and keeps its span."""
    direction = torch.zeros(16)
    direction[5] = 1.0
    g = torch.Generator().manual_seed(0)
    negative = torch.randn(8, 16, generator=g) * 0.01
    positive = negative + torch.cat([3 * direction[None], -direction.repeat(7, 1)])
    plain = SubspaceConfig(center=False, max_pair_cosine=1.0)
    oriented = fit_layer_subspace(positive, negative, plain)
    raw = fit_layer_subspace(positive, negative, replace(plain, orient=False))
    assert float(oriented.mean_difference @ direction) < 0  # toward the + pole is −d
    assert float(raw.basis[0] @ direction) > 0.99  # the SVD's sign: the wrong way
    assert float(oriented.basis[0] @ direction) < -0.99  # oriented: the same span, flipped


def test_rank_by_explained_variance_with_cap():
    g = torch.Generator().manual_seed(1)
    negative = torch.randn(12, 32, generator=g)
    positive = negative + torch.randn(12, 32, generator=g) * 3  # isotropic: needs many directions
    full = fit_layer_subspace(positive, negative, SubspaceConfig(max_rank=50))
    capped = fit_layer_subspace(positive, negative, SubspaceConfig(max_rank=3))
    assert full.rank > 3 and capped.rank == 3
    energy = full.singular_values.pow(2)
    assert float(energy[: full.rank].sum() / energy.sum()) >= 0.9
    assert float(energy[: full.rank - 1].sum() / energy.sum()) < 0.9
    assert torch.allclose(capped.basis @ capped.basis.T, torch.eye(3), atol=1e-5)


def test_pairs_too_similar_are_filtered_out():
    g = torch.Generator().manual_seed(2)
    negative = torch.randn(6, 16, generator=g) * 10
    positive = negative.clone()
    positive[:3] += torch.randn(3, 16, generator=g) * 30  # three distinct pairs
    positive[3:] += 0.01  # three near-identical pairs (cos ≈ 1 > 0.8)
    subspace = fit_layer_subspace(positive, negative)
    assert subspace.pairs_kept == 3 and subspace.pairs_total == 6
    none = fit_layer_subspace(negative + 0.01, negative)
    assert none.rank == 0 and none.pairs_kept == 0


def test_a_component_common_to_every_text_does_not_filter_every_pair():
    """Residual-stream embeddings share a huge offset; the filter judges what is left."""
    direction = torch.zeros(16)
    direction[3] = 1.0
    positive, negative = pairs_along(direction)
    offset = torch.full((16,), 100.0)  # cos(p + offset, n + offset) ≈ 1 for every pair
    centered = fit_layer_subspace(positive + offset, negative + offset)
    assert centered.pairs_kept == 8 and float(centered.basis[0] @ direction) > 0.99
    raw = fit_layer_subspace(positive + offset, negative + offset, SubspaceConfig(center=False))
    assert raw.pairs_kept == 0
