"""Keeping several axes apart by giving each shared layer to one of them.

Where two axes push at the same layer, the layer goes to the axis that is stronger there relative
to its own other layers (its poles' mean difference over the layer's residual norm, as a share
of its best layer); the other axis drops that layer. So no layer carries two pushes and the
budget has nothing to scale. Each axis then scales its remaining pushes up so that their summed
length is what it was (at most `MAX_COMPENSATION` times), keeping its reach; an axis that would
lose every layer keeps its strongest one. Only additive edits (`add`) take part, as in the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from alignez_core.engine.budget import push
from alignez_core.engine.edit import LayerEdit

if TYPE_CHECKING:  # plan.py calls this module
    from .plan import AxisEdit

MAX_COMPENSATION = 2.0


def assign_layers(edits: Sequence[AxisEdit]) -> list[AxisEdit]:
    """`edits` with each shared (site, layer) kept by one axis (module docstring)."""
    claims: dict[tuple[str, int], list[tuple[float, int, int]]] = {}
    for k, edit in enumerate(edits):
        scores = dict(edit.layer_scores)
        for item in edit.edit.layer_edits:
            if item.rule == "add":  # (score, earlier axis first on a tie, axis)
                claims.setdefault((item.site, item.layer), []).append(
                    (scores.get(item.layer, 0.0), -k, k)
                )
    owner = {key: max(claim)[2] for key, claim in claims.items()}
    return [_keep_own(k, edit, owner) for k, edit in enumerate(edits)]


def _keep_own(k: int, edit: AxisEdit, owner: dict[tuple[str, int], int]) -> AxisEdit:
    items = edit.edit.layer_edits
    additive = [item for item in items if item.rule == "add"]
    if not additive:
        return edit
    kept = [item for item in additive if owner[(item.site, item.layer)] == k]
    if not kept:  # everything taken: keep the strongest layer, shared
        scores = dict(edit.layer_scores)
        kept = [max(additive, key=lambda item: scores.get(item.layer, 0.0))]
    before = sum(float(push(item).norm()) for item in additive)
    after = sum(float(push(item).norm()) for item in kept)
    factor = min(before / after, MAX_COMPENSATION) if after > 0 else 1.0
    scaled: list[LayerEdit] = [replace(item, strength=item.strength * factor) for item in kept]
    others = [item for item in items if item.rule != "add"]
    layer_edits = tuple(scaled + others)
    layers = tuple(item.layer for item in layer_edits)
    return replace(edit, edit=replace(edit.edit, layer_edits=layer_edits), layers=layers)
