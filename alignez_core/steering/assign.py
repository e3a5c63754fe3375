"""Keeping several axes apart by giving each shared layer to one of them.

Where axes push at the same layers, each shared layer goes to one of them: the layers are handed
out in order of how much stronger one axis is there than the others (an axis's strength at a
layer: its poles' mean difference over the layer's residual norm, as a share of its best layer),
each axis taking at most half of the layers it shares, so neither loses its whole band to a flat
profile. The others drop that layer, so no layer carries two pushes and the budget has nothing to
scale. Each axis then scales its remaining pushes up so that their summed length is what it was
(at most `MAX_COMPENSATION` times), keeping its reach; an axis that would lose every layer keeps
its strongest one. Only additive edits (`add`) take part, as in the budget. Not the default: it
kept fewer pairs than the budget (docs/RESULTS.md).
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
    scores = [dict(edit.layer_scores) for edit in edits]
    sharing: dict[tuple[str, int], list[int]] = {}
    for k, edit in enumerate(edits):
        for item in edit.edit.layer_edits:
            if item.rule == "add":
                sharing.setdefault((item.site, item.layer), []).append(k)
    owner = {key: axes[0] for key, axes in sharing.items() if len(axes) == 1}
    shared = {key: axes for key, axes in sharing.items() if len(axes) > 1}
    quota = {k: 0 for k in range(len(edits))}  # each axis's fair share of its shared layers
    for axes in shared.values():
        for k in axes:
            quota[k] += 1
    quota = {k: -(-n // 2) for k, n in quota.items()}
    # (advantage over the others sharing the layer, earlier axis first on a tie, layer, axis)
    claims = sorted(
        (
            (scores[k].get(key[1], 0.0) - max(scores[o].get(key[1], 0.0) for o in axes if o != k),
             -k, key, k)
            for key, axes in shared.items()
            for k in axes
        ),
        reverse=True,
    )  # fmt: skip
    taken = {k: 0 for k in range(len(edits))}
    for _, _, key, k in claims:
        if key not in owner and taken[k] < quota[k]:
            owner[key], taken[k] = k, taken[k] + 1
    for _, _, key, k in claims:  # layers no axis under its share wanted: the strongest there
        owner.setdefault(key, k)
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
