"""Edits as data, and their compilation into a per-row plan for one batched forward.

An `Edit` is what one row of a batch gets: a set of `LayerEdit`s (layer, directions, rule,
strength, site). A batch of rows compiles into a `BatchPlan` that the hooks apply; rows without
an edit are left untouched, so base and edited answers come out of the same pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from alignez_core.errors import EditError

from .architecture import SITES, Site
from .rules import InPlaceEdit, edit_kernel

Positions = Literal["last", "all", "prompt"]
POSITIONS: tuple[str, ...] = ("last", "all", "prompt")
# The rules a slider drives, named by what they compute (`steering/plan.py` turns each into layer
# edits of the kernels in rules.py): push along the mean difference, or along its part in the
# prompt's subspace; amplify the state's projection onto that subspace (plainly, or tanh-bounded).
SLIDER_RULES: tuple[str, ...] = ("subspace", "mean_diff", "project", "tanh")
# Names before 2026-12-05, still read from saved packs, settings and the command line.
LEGACY_RULE_NAMES = {"steer": "subspace", "caa": "mean_diff", "paper": "project"}
ALL_LAYERS: tuple[float, float] = (0.0, 1.0)  # a band (fractions of depth) holding every layer


@dataclass(frozen=True)
class LayerEdit:
    """Edit one decoder layer's output at `site` along `directions` (k × d) with `rule`.

    `residual` edits the block's output (the stream the next layer reads); `mlp` the MLP's output
    before it is added to the stream (the paper's site). `positions` None: the row's (`Edit`), so
    axes steered at different positions share one row.
    """

    layer: int
    directions: torch.Tensor
    strength: float = 1.0
    rule: str = "add"
    site: Site = "mlp"
    positions: Positions | None = None


@dataclass(frozen=True)
class Edit:
    """Everything applied to one row: several layers, possibly several axes per layer."""

    layer_edits: tuple[LayerEdit, ...] = ()
    positions: Positions = "last"

    def __add__(self, other: Edit) -> Edit:
        return Edit(self.resolved() + other.resolved(), self.positions)

    def resolved(self) -> tuple[LayerEdit, ...]:
        """The layer edits, each carrying its positions (its own, else this row's)."""
        return tuple(
            item if item.positions is not None else replace(item, positions=self.positions)
            for item in self.layer_edits
        )

    @property
    def is_empty(self) -> bool:
        return not self.layer_edits


def slider_rule(name: str) -> str:
    """A slider rule's name as it is today (an older name is translated), or an EditError."""
    rule = LEGACY_RULE_NAMES.get(name, name)
    if rule not in SLIDER_RULES:
        raise EditError(f"Unknown rule {name!r}; choose one of {', '.join(SLIDER_RULES)}.")
    return rule


def check_positions(positions: str) -> Positions:
    """Which tokens an edit touches: `last` (each forward's last position: the prompt's last
    token, then every generated one), `all` (also every prompt token), or `prompt` (every
    prompt token, in the first forward only; generated tokens read the edit through the cache)."""
    if positions not in POSITIONS:
        raise EditError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}.")
    return positions  # type: ignore[return-value]


def check_strength(strength: float, what: str = "strength") -> float:
    """Reject NaN/inf and non-numbers with a message naming the value."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise EditError(f"{what} must be a number, got {strength!r}.") from None
    if not math.isfinite(value):
        raise EditError(f"{what} must be finite, got {value}.")
    return value


@dataclass(frozen=True)
class _RowOp:
    row: int | None  # None: every row of whatever batch runs (`steer()`)
    kernel: InPlaceEdit  # the rule with its directions and strength baked in
    positions: Positions


@dataclass
class BatchPlan:
    """Per-(site, layer) operations for one batch, validated and moved to the model's device."""

    ops_by_site: dict[tuple[str, int], list[_RowOp]] = field(default_factory=dict)

    def apply(self, key: tuple[str, int], output: torch.Tensor) -> torch.Tensor | None:
        """Edit the (site, layer) output (B, T, d) row by row; None when it has no edit.

        The output is a fresh tensor that only the next op reads (the residual add after an MLP,
        the next block after a block), so it is edited in place (a copy only when autograd
        tracks it): each row's edit is a view plus its kernel's one to three ops, with no
        clone, gather or scatter on the per-token path.
        """
        ops = self.ops_by_site.get(key)
        if not ops:
            return None
        edited = output.clone() if output.requires_grad else output
        single_row = edited.shape[0] == 1
        prefill = edited.shape[1] > 1
        for op in ops:
            if op.positions == "prompt" and not prefill:  # the prompt's tokens, first forward
                continue
            for row in range(edited.shape[0]) if op.row is None else (op.row,):
                if op.positions in ("prompt", "all"):
                    view = edited[row]  # (T, d)
                else:
                    view = edited[:, -1] if single_row else edited[row, -1:]  # (1, d)
                op.kernel(view)
        return edited

    def for_every_row(self) -> BatchPlan:
        """This plan's row-0 edit applied to every row of any batch (`steer()`)."""
        return BatchPlan(
            {key: [replace(op, row=None) for op in ops] for key, ops in self.ops_by_site.items()}
        )

    def __add__(self, other: BatchPlan) -> BatchPlan:
        """Both plans' operations, this one's first at each (site, layer)."""
        merged = {key: list(ops) for key, ops in self.ops_by_site.items()}
        for key, ops in other.ops_by_site.items():
            merged.setdefault(key, []).extend(ops)
        return BatchPlan(merged)


def compile_plan(
    edits: Sequence[Edit | None],
    num_layers: int,
    hidden_size: int,
    device: torch.device | Callable[[str, int], torch.device],
) -> BatchPlan | None:
    """Validate every row's edit and group it by layer; None when no row edits anything.

    `device`: where the directions go, or a function of (site, layer) for a model split across
    devices (`LoadedModel.layer_device`)."""
    plan = BatchPlan()
    for row, edit in enumerate(edits):
        if edit is None:
            continue
        check_positions(edit.positions)
        for item in edit.resolved():
            plan.ops_by_site.setdefault((item.site, item.layer), []).append(
                _compile_one(item, row, num_layers, hidden_size, device)
            )
    return plan if plan.ops_by_site else None


def _compile_one(
    item: LayerEdit,
    row: int,
    num_layers: int,
    hidden_size: int,
    device: torch.device | Callable[[str, int], torch.device],
) -> _RowOp:
    if not isinstance(item.layer, int) or not 0 <= item.layer < num_layers:
        raise EditError(f"Layer {item.layer!r} is out of range: the model has {num_layers} layers.")
    if item.site not in SITES:
        raise EditError(f"site must be one of {', '.join(SITES)}, got {item.site!r}.")
    device = device(item.site, item.layer) if callable(device) else device
    directions = torch.as_tensor(item.directions)
    if directions.ndim == 1:
        directions = directions.unsqueeze(0)
    if directions.ndim != 2 or directions.shape[-1] != hidden_size:
        raise EditError(
            f"Directions for layer {item.layer} have shape {tuple(directions.shape)}; "
            f"this model's hidden size is {hidden_size}."
        )
    if not torch.isfinite(directions).all():
        raise EditError(f"Directions for layer {item.layer} contain NaN or inf.")
    strength = check_strength(item.strength)
    try:
        kernel = edit_kernel(item.rule, directions.to(device=device, dtype=torch.float32), strength)
    except KeyError as exc:
        raise EditError(str(exc.args[0])) from None
    return _RowOp(row=row, kernel=kernel, positions=check_positions(item.positions or "last"))
