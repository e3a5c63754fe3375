"""Per prompt, each axis's edit: its layers, directions, rule and strength, then one row's
edit from several axes (their shared layers kept within the budget).

Rules (docs/method.md §6): `subspace` pushes along the oriented mean difference projected onto
the query's AlignEZ subspace; `mean_diff` along the unit mean difference; `project` amplifies
what the state holds along the subspace (x + α·Σ⟨x,θ⟩θ); `tanh` is its norm-scaled form.
Layers: every layer of the pack's band by default; `top_n` keeps the per-query best n, `layers`
pins them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from alignez_core.axes.pack import AxisPack
from alignez_core.axes.selection import LayerChoice, select_layers
from alignez_core.engine.activations import query_embeddings
from alignez_core.engine.budget import LayerBudget, apply_budget
from alignez_core.engine.edit import Edit, LayerEdit, check_strength
from alignez_core.engine.model import LoadedModel
from alignez_core.engine.separate import separate

from .assign import assign_layers
from .settings import ADDITIVE_RULES, SteerSettings


@dataclass(frozen=True)
class AxisEdit:
    """What one axis does to one prompt: its layers and the edit."""

    axis: str
    strength: float
    layers: tuple[int, ...]
    edit: Edit
    choices: tuple[LayerChoice, ...] = field(default=(), repr=False)
    # per edited layer, how strongly this axis's poles differ there as a share of its best layer
    # (‖mean difference‖ ÷ residual norm): which axis keeps a shared layer (`assign.py`)
    layer_scores: tuple[tuple[int, float], ...] = field(default=(), repr=False)


def _unit(vector: torch.Tensor) -> torch.Tensor | None:
    norm = vector.norm()
    return vector / norm if norm > 1e-8 else None


def _layer_directions(pack: AxisPack, choice: LayerChoice, rule: str) -> torch.Tensor | None:
    """The (k, d) directions a rule is given at one layer, or None when it has nothing to do."""
    if rule in ("project", "tanh"):
        return choice.directions if choice.directions.shape[0] else None
    mean = pack.layers[choice.layer].mean_difference
    if rule == "mean_diff":
        unit = _unit(mean)
    else:  # subspace: the mean difference restricted to span Θ_l(q)
        if choice.directions.shape[0] == 0:
            return None
        unit = _unit((choice.directions @ mean) @ choice.directions)
    return None if unit is None else unit[None, :]


def _layer_edit(
    pack: AxisPack, layer: int, directions: torch.Tensor, strength: float, rule: str
) -> LayerEdit:
    """The edit at one layer. Additive rules on a residual pack push a fixed step in the layer's
    residual units (`add`); otherwise the rule runs as named, relative to the token's state.

    `project` and `tanh` amplify what the state already holds along Θ, so they always edit the MLP
    output (the paper's site): on the residual stream, x + ⟨x,θ⟩θ at α = 1 turned every answer
    on every axis into a loop (docs/RESULTS.md)."""
    if rule in ADDITIVE_RULES:
        if pack.site == "residual" and pack.residual_norms:
            step = strength * pack.residual_norms[layer]
            return LayerEdit(layer, directions, step, "add", "residual")
        return LayerEdit(layer, directions, strength, "scaled_add", pack.site)  # type: ignore[arg-type]
    return LayerEdit(layer, directions, strength, rule, "mlp")


def axis_edit(
    pack: AxisPack, strength: float, query: torch.Tensor, settings: SteerSettings
) -> AxisEdit:
    """One axis's edit for one prompt whose per-layer embedding is `query` (L × d)."""
    strength = check_strength(strength, f"strength of axis {pack.name!r}")
    settings = settings.for_pack(pack)
    if strength == 0:
        return AxisEdit(pack.name, 0.0, (), Edit(positions=settings.chosen_positions))
    choices = select_layers(
        query,
        pack.layers,
        settings.top_n,
        settings.layers,
        toward_positive=strength > 0,
        within=settings.band_layers(pack.num_layers),
    )
    scaled = strength * settings.scale_for(pack, strength)
    layer_edits = []
    for choice in choices:
        directions = _layer_directions(pack, choice, settings.chosen_rule)
        if directions is not None:
            item = _layer_edit(pack, choice.layer, directions, scaled, settings.chosen_rule)
            # each layer edit keeps this axis's positions when rows combine several axes
            layer_edits.append(replace(item, positions=settings.positions))
    edit = Edit(tuple(layer_edits), settings.chosen_positions)
    used = tuple(item.layer for item in layer_edits)
    return AxisEdit(pack.name, strength, used, edit, tuple(choices), layer_scores(pack, used))


def layer_scores(pack: AxisPack, layers: Sequence[int]) -> tuple[tuple[int, float], ...]:
    """Per layer, ‖mean difference‖ ÷ the layer's residual norm, as a share of the largest."""
    norms = pack.residual_norms or [1.0] * pack.num_layers
    raw = {i: float(pack.layers[i].mean_difference.norm()) / norms[i] for i in layers}
    top = max(raw.values(), default=0.0)
    return tuple((i, value / top if top > 0 else 0.0) for i, value in raw.items())


def plan_edits(
    lm: LoadedModel,
    prompts: Sequence[str],
    axes: Mapping[AxisPack, float],
    settings: SteerSettings = SteerSettings(),
) -> list[list[AxisEdit]]:
    """Per prompt, every axis's edit (validated against the model before anything runs)."""
    for pack, strength in axes.items():
        pack.check_compatible(lm)
        check_strength(strength, f"strength of axis {pack.name!r}")
    active = {pack: s for pack, s in axes.items() if s != 0}
    embeddings = {
        key: query_embeddings(lm, prompts, *key)  # type: ignore[arg-type]
        for key in {(pack.pooling, pack.site) for pack in active}
    }
    return [
        [
            axis_edit(pack, strength, embeddings[pack.pooling, pack.site][i], settings)
            if pack in active
            else AxisEdit(
                pack.name, 0.0, (), Edit(positions=settings.for_pack(pack).chosen_positions)
            )
            for pack, strength in axes.items()
        ]
        for i in range(len(prompts))
    ]


def _kept_apart(edits: Sequence[AxisEdit], settings: SteerSettings) -> list[LayerEdit]:
    """Every axis's layer edits, with shared layers kept apart as `settings.separate` says."""
    if settings.separate == "assign":
        edits = assign_layers(edits)
        return [item for e in edits for item in e.edit.resolved()]
    items = [item for e in edits for item in e.edit.resolved()]
    return list(separate(items, settings.separate))


def layer_budgets(edits: Sequence[AxisEdit], settings: SteerSettings) -> tuple[LayerBudget, ...]:
    """Where one row's axes share layers, and how the budget scaled them there."""
    return apply_budget(_kept_apart(edits, settings), settings.budget, settings.shared_scale)[1]


def combine(edits: Sequence[AxisEdit], settings: SteerSettings = SteerSettings()) -> Edit:
    """One row's edit from every axis's: at shared layers kept apart (when asked) and then
    within the budget."""
    parts = _kept_apart(edits, settings)
    budgeted, _ = apply_budget(parts, settings.budget, settings.shared_scale)
    return Edit(budgeted, settings.positions or "last")
