"""A shared strength budget for several axes pushing at the same layers.

Two pushes that are each clean alone can add up past the clean edge (measured: cheerful −1 with
simple +1 made 4 of 12 answers loop, though each alone made at most 1). Per (site, layer), the
combined additive push Σ sᵢ·uᵢ is kept within `budget` × the strongest single push there; when it
would exceed that, every axis's part at that layer is scaled by the same factor, so the ratio the
sliders ask for is kept. Only additive edits (`add`) take part: the relative rules (`project`,
`tanh`, `scaled_add` on MLP-site packs) scale with the state itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from .edit import LayerEdit


@dataclass(frozen=True)
class LayerBudget:
    """One layer where several axes push: what they asked for and what the budget allowed."""

    site: str
    layer: int
    asked: float  # ‖Σ sᵢ·uᵢ‖, the combined push
    strongest: float  # max ‖sᵢ·uᵢ‖, the strongest single push
    factor: float  # applied to every part (1 = within the budget)


def push(edit: LayerEdit) -> torch.Tensor:
    """An additive edit's push at its layer: strength × the sum of its directions."""
    return edit.strength * edit.directions.float().sum(0)


def additive_groups(edits: Sequence[LayerEdit]) -> dict[tuple[str, int], list[int]]:
    """The indices of the additive (`add`) edits per (site, layer): where pushes add up."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, edit in enumerate(edits):
        if edit.rule == "add":
            groups.setdefault((edit.site, edit.layer), []).append(i)
    return groups


def apply_budget(
    edits: Sequence[LayerEdit], budget: float | None, shared_scale: float | None = None
) -> tuple[tuple[LayerEdit, ...], tuple[LayerBudget, ...]]:
    """`edits` with the additive parts scaled to the budget, and a report per shared layer.
    `shared_scale` (a joint calibration's common scale for this combination) replaces the
    budget: every part at a shared layer is scaled by it."""
    out = list(edits)
    reports = []
    for (site, layer), members in additive_groups(edits).items():
        if len(members) < 2:
            continue
        pushes = [push(edits[i]) for i in members]
        asked = float(torch.stack(pushes).sum(0).norm())
        strongest = max(float(p.norm()) for p in pushes)
        factor = 1.0
        if shared_scale is not None:
            factor = shared_scale
        elif budget is not None and asked > budget * strongest > 0:
            factor = budget * strongest / asked
        if factor != 1.0:
            for i in members:
                out[i] = replace(edits[i], strength=edits[i].strength * factor)
        reports.append(LayerBudget(site, layer, asked, strongest, factor))
    return tuple(out), tuple(reports)


def layer_span(layers: Sequence[int]) -> str:
    """Layers as a person reads them: 3–7, 10."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def budget_summary(reports: Sequence[LayerBudget], budget: float | None = 1.0) -> str:
    """One sentence for a person: which layers several axes share, and were they scaled back?"""
    if not reports:
        return ""
    ratio = sum(r.asked / r.strongest for r in reports if r.strongest) / len(reports)
    scaled = [r for r in reports if r.factor < 1]
    text = (
        f"The active axes push together at {len(reports)} layers "
        f"({layer_span([r.layer for r in reports])}); combined, "
        f"{ratio:.2f}× the strongest alone"
    )
    if budget is None:
        return text + " (budget off: raw sums, which loop more often)."
    if not scaled:
        return text + ", within the budget."
    kept = sum(r.factor for r in scaled) / len(scaled)
    return (
        text + f": scaled back to {kept:.0%} of what the sliders ask at {len(scaled)} layers "
        "to stay as fluent as one axis at its edge (turn the budget off in the settings)."
    )
