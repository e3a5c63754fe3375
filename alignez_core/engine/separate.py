"""Keeping several axes apart where they push at the same layer.

Two axes' directions at a shared layer are rarely orthogonal, so each one's push carries part of
the other's, and the pair's sum moves each axis's judge by more or less than intended. Before the
budget (`budget.py`), the additive pushes at each shared (site, layer) can be made orthogonal:

- `ordered`: Gram–Schmidt in the order the axes were given; the first keeps its direction, each
  later one loses what it shares with those before it;
- `symmetric`: Löwdin's orthogonalisation, the orthonormal set closest to all the directions at
  once, so no axis is favoured.

Each push keeps its length (its slider's strength); only its direction turns. Relative rules
(`project`, `tanh`, `scaled_add`) take no part, as in the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch

from .budget import additive_groups, push
from .edit import EditError, LayerEdit

Separation = Literal["ordered", "symmetric"]
SEPARATIONS: tuple[str, ...] = ("ordered", "symmetric")
_TINY = 1e-8


def _orthonormal(units: torch.Tensor, how: Separation) -> torch.Tensor:
    """Rows of `units` (n × d, unit length) made orthonormal; a row that lies in the span of the
    others (nothing of its own left) comes back as zeros."""
    if how == "ordered":
        out: list[torch.Tensor] = []
        for row in units:
            for done in out:
                row = row - (row @ done) * done
            norm = row.norm()
            out.append(row / norm if norm > _TINY else torch.zeros_like(row))
        return torch.stack(out)
    overlap = units @ units.T  # Löwdin: U (UᵀU)^(-1/2), on the rows
    values, vectors = torch.linalg.eigh(overlap)
    keep = values > _TINY
    inverse_root = (vectors[:, keep] / values[keep].sqrt()) @ vectors[:, keep].T
    return inverse_root @ units


def separate(edits: Sequence[LayerEdit], how: Separation | None) -> tuple[LayerEdit, ...]:
    """`edits` with the additive pushes at each shared (site, layer) made orthogonal (module
    docstring); `how` None leaves them as they are."""
    if how is None:
        return tuple(edits)
    if how not in SEPARATIONS:
        raise EditError(f"separation must be one of {', '.join(SEPARATIONS)}, got {how!r}.")
    out = list(edits)
    for members in additive_groups(edits).values():
        if len(members) < 2:
            continue
        pushes = torch.stack([push(edits[i]) for i in members])
        lengths = pushes.norm(dim=1)
        if bool((lengths <= _TINY).any()):
            continue  # a zero push has no direction to keep apart
        turned = _orthonormal(pushes / lengths[:, None], how)
        for row, i in enumerate(members):
            direction = turned[row].to(edits[i].directions.dtype)[None, :]
            out[i] = replace(edits[i], directions=direction, strength=float(lengths[row]))
    return tuple(out)
