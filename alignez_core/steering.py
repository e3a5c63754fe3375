"""Turn fitted axes + slider strengths into per-prompt edits, and generate with them.

`generate(lm, prompts, steer={pack_a: 0.8, pack_b: -0.5})` gives each prompt a base answer and
an edited answer from one batched pass. Rules (METHOD §6, `rules.py`):
- `steer`: push along u, the oriented mean difference projected onto span Θ_l(q), unit —
  signed: +α moves toward the positive pole, −α toward the negative one;
- `caa`:   push along m̂, the unit mean difference (the CAA baseline, same pairs);
- `paper`: x + α·Σ⟨x,θ⟩θ over Θ_l(q), α = the slider value (the paper's rule, symmetric);
- `tanh`:  x + α·‖x‖·Σ tanh(⟨x,θ⟩/‖x‖)θ over Θ_l(q) (the blog's rule, norm-scaled).

Units. A pack read at the residual stream (the default) pushes `steer`/`caa` by
slider × c × ‖h_l‖, ‖h_l‖ the layer's typical residual norm stored at fit time, and c the pack's
calibrated clean edge for the slider's sign (`SliderCalibration`), so ±1 is the last fluent
strength measured on the axis's own queries. Packs read at the MLP output (the paper's site, and
every pack saved before sites were stored) push by slider × 0.25 × the token's MLP-output norm.

Layers. By default every layer in the middle band of the network (`band`, fractions of depth)
that has directions for the query — each pack's own band unless one is given; `top_n` keeps only
the per-query best n of the band (the paper's rule with `band=ALL_LAYERS`), and `layers` pins
them by hand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from .activations import query_embeddings
from .budget import LayerBudget, apply_budget
from .edit import STEER_RULES, Edit, LayerEdit, Positions, check_positions, check_strength
from .errors import EditError
from .generation import Row, SamplingConfig, generate_rows, stream_rows
from .model import LoadedModel
from .pack import AxisPack
from .selection import LayerChoice, select_layers

ADDITIVE_RULES = ("steer", "caa")
# Slider value → rule strength where a pack carries no calibration. `paper` is exactly α. The
# additive rules push by a fraction of a norm per edited layer: of the layer's typical residual
# norm for residual packs (the probe's clean point on SmolLM2), of the token's own MLP-output
# norm for MLP packs.
DEFAULT_SCALE = {"paper": 1.0, "tanh": 1.0, "steer": 0.04, "caa": 0.04}
MLP_SITE_SCALE = {"paper": 1.0, "tanh": 1.0, "steer": 0.25, "caa": 0.25}
DEFAULT_BAND = (0.25, 0.7)  # for packs that store no band of their own
DEFAULT_BUDGET = 1.0


@dataclass(frozen=True)
class SteerSettings:
    """How sliders become edits: the rule, which layers, which positions, what scale.

    `rule`, `band`, `positions` None: each pack's own, the ones its slider was calibrated with
    (`AxisPack.fitted_rule`), so a pack steers as fitted unless the caller says otherwise.
    """

    rule: str | None = None
    top_n: int | None = None  # None: every layer of the band; n: the per-query best n
    layers: tuple[int, ...] | None = None  # pinned layers instead of band / top-n
    band: tuple[float, float] | None = None  # [from, to) as fractions of depth; ALL_LAYERS
    positions: Positions | None = None
    scale: float | None = None  # None: the pack's calibration, else the rule's default
    # Several axes at one layer: their combined push stays within budget × the strongest single
    # push (`budget.py`); None adds them raw.
    budget: float | None = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        if self.rule is not None and self.rule not in STEER_RULES:
            raise EditError(f"Unknown rule {self.rule!r}; choose one of {', '.join(STEER_RULES)}.")
        if self.positions is not None:
            check_positions(self.positions)
        if self.top_n is not None and not 1 <= self.top_n <= 64:
            raise EditError(f"top_n must be 1–64, got {self.top_n}.")
        if self.band is not None:
            low, high = (check_strength(b, "band") for b in self.band)
            if not 0 <= low < high <= 1:
                raise EditError(f"band must be two fractions 0 ≤ from < to ≤ 1, got {self.band}.")
        if self.scale is not None:
            check_strength(self.scale, "scale")
        if self.budget is not None and not 0 < check_strength(self.budget, "budget") <= 10:
            raise EditError(f"budget must be in (0, 10] or None, got {self.budget}.")

    def band_layers(self, num_layers: int) -> tuple[int, ...]:
        """The layers of the band on a model of `num_layers` (never empty); with no band set
        (no pack to take one from), `DEFAULT_BAND`'s."""
        band = self.band or DEFAULT_BAND
        low, high = round(band[0] * num_layers), round(band[1] * num_layers)
        return tuple(range(min(low, num_layers - 1), max(high, low + 1)))

    def filled_from(self, defaults: SteerSettings) -> SteerSettings:
        """These settings with the rule, band and positions they leave open (None) taken from
        `defaults`."""
        return replace(
            self,
            rule=self.rule or defaults.rule,
            band=self.band or defaults.band,
            positions=self.positions or defaults.positions,
        )

    def for_pack(self, pack: AxisPack) -> SteerSettings:
        """These settings with what they leave open taken from the pack (as it was fitted)."""
        fitted = SteerSettings(
            rule=pack.fitted_rule(),
            band=pack.fitted_band() or DEFAULT_BAND,
            positions=pack.fitted_positions(),  # type: ignore[arg-type]  # checked on load
        )
        return self.filled_from(fitted)

    def scale_for(self, pack: AxisPack, strength: float) -> float:
        """Rule strength per unit of slider for this pack and the slider's sign."""
        if self.scale is not None:
            return self.scale
        if pack.site == "mlp":
            return MLP_SITE_SCALE[self.rule]
        if self.rule in ADDITIVE_RULES and pack.calibration is not None:
            return pack.calibration.for_sign(strength)
        return DEFAULT_SCALE[self.rule]


@dataclass(frozen=True)
class AxisEdit:
    """What one axis does to one prompt: its layers and the edit."""

    axis: str
    strength: float
    layers: tuple[int, ...]
    edit: Edit
    choices: tuple[LayerChoice, ...] = field(default=(), repr=False)


def _unit(vector: torch.Tensor) -> torch.Tensor | None:
    norm = vector.norm()
    return vector / norm if norm > 1e-8 else None


def _layer_directions(pack: AxisPack, choice: LayerChoice, rule: str) -> torch.Tensor | None:
    """The (k, d) directions a rule is given at one layer, or None when it has nothing to do."""
    if rule in ("paper", "tanh"):
        return choice.directions if choice.directions.shape[0] else None
    mean = pack.layers[choice.layer].mean_difference
    if rule == "caa":
        unit = _unit(mean)
    else:  # steer: the mean difference restricted to span Θ_l(q)
        if choice.directions.shape[0] == 0:
            return None
        unit = _unit((choice.directions @ mean) @ choice.directions)
    return None if unit is None else unit[None, :]


def _layer_edit(
    pack: AxisPack, layer: int, directions: torch.Tensor, strength: float, rule: str
) -> LayerEdit:
    """The edit at one layer. Additive rules on a residual pack push a fixed step in the layer's
    residual units (`add`); otherwise the rule runs as named, relative to the token's state.

    `paper` and `tanh` amplify what the state already holds along Θ, so they always edit the MLP
    output (the paper's site): on the residual stream, x + ⟨x,θ⟩θ at α = 1 turned every answer
    on every axis into a loop (docs/RESULTS.md)."""
    if rule in ADDITIVE_RULES:
        if pack.site == "residual" and pack.residual_norms:
            step = strength * pack.residual_norms[layer]
            return LayerEdit(layer, directions, step, "add", "residual")
        return LayerEdit(layer, directions, strength, "steer", pack.site)  # type: ignore[arg-type]
    return LayerEdit(layer, directions, strength, rule, "mlp")


def axis_edit(
    pack: AxisPack, strength: float, query: torch.Tensor, settings: SteerSettings
) -> AxisEdit:
    """One axis's edit for one prompt whose per-layer embedding is `query` (L × d)."""
    strength = check_strength(strength, f"strength of axis {pack.name!r}")
    settings = settings.for_pack(pack)
    if strength == 0:
        return AxisEdit(pack.name, 0.0, (), Edit(positions=settings.positions))
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
        directions = _layer_directions(pack, choice, settings.rule)
        if directions is not None:
            item = _layer_edit(pack, choice.layer, directions, scaled, settings.rule)
            # each layer edit keeps this axis's positions when rows combine several axes
            layer_edits.append(replace(item, positions=settings.positions))
    edit = Edit(tuple(layer_edits), settings.positions)
    used = tuple(item.layer for item in layer_edits)
    return AxisEdit(pack.name, strength, used, edit, tuple(choices))


def plan_edits(
    lm: LoadedModel,
    prompts: Sequence[str],
    steer: Mapping[AxisPack, float],
    settings: SteerSettings = SteerSettings(),
) -> list[list[AxisEdit]]:
    """Per prompt, every axis's edit (validated against the model before anything runs)."""
    for pack, strength in steer.items():
        pack.check_compatible(lm)
        check_strength(strength, f"strength of axis {pack.name!r}")
    active = {pack: s for pack, s in steer.items() if s != 0}
    embeddings = {
        key: query_embeddings(lm, prompts, *key)  # type: ignore[arg-type]
        for key in {(pack.pooling, pack.site) for pack in active}
    }
    return [
        [
            axis_edit(pack, strength, embeddings[pack.pooling, pack.site][i], settings)
            if pack in active
            else AxisEdit(pack.name, 0.0, (), Edit(positions=settings.for_pack(pack).positions))
            for pack, strength in steer.items()
        ]
        for i in range(len(prompts))
    ]


def layer_budgets(edits: Sequence[AxisEdit], settings: SteerSettings) -> tuple[LayerBudget, ...]:
    """Where one row's axes share layers, and how the budget scaled them there."""
    return apply_budget([item for e in edits for item in e.edit.layer_edits], settings.budget)[1]


def combine(edits: Sequence[AxisEdit], settings: SteerSettings = SteerSettings()) -> Edit:
    """One row's edit from every axis's, their shared layers kept within the budget."""
    parts = [item for e in edits for item in e.edit.resolved()]
    budgeted, _ = apply_budget(parts, settings.budget)
    return Edit(budgeted, settings.positions or "last")


@dataclass(frozen=True)
class SteeredAnswer:
    prompt: str
    base: str
    edited: str
    layers: dict[str, tuple[int, ...]]


def build_rows(
    lm: LoadedModel,
    prompts: Sequence[str],
    steer: Mapping[AxisPack, float],
    settings: SteerSettings,
) -> tuple[list[Row], list[list[AxisEdit]]]:
    """Two rows per prompt (base, then edited with every axis combined) and the plans."""
    if not prompts:
        raise EditError("No prompts given.")
    planned = plan_edits(lm, prompts, steer, settings)
    rows = []
    for prompt, edits in zip(prompts, planned, strict=True):
        rows.append(Row(prompt))
        rows.append(Row(prompt, combine(edits, settings)))
    return rows, planned


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    steer: Mapping[AxisPack, float] | None = None,
    settings: SteerSettings = SteerSettings(),
    sampling: SamplingConfig = SamplingConfig(),
) -> list[SteeredAnswer]:
    """Base and edited answer for every prompt, as one batch of 2·N rows."""
    rows, planned = build_rows(lm, prompts, steer or {}, settings)
    outputs = generate_rows(lm, rows, sampling)
    return [
        SteeredAnswer(
            prompt,
            outputs[2 * i].text,
            outputs[2 * i + 1].text,
            {e.axis: e.layers for e in planned[i]},
        )
        for i, prompt in enumerate(prompts)
    ]


def stream(
    lm: LoadedModel,
    prompt: str,
    steer: Mapping[AxisPack, float] | None = None,
    settings: SteerSettings = SteerSettings(),
    sampling: SamplingConfig = SamplingConfig(),
) -> Iterator[tuple[str, str]]:
    """Yield (base, edited) text for one prompt as tokens arrive."""
    rows, _ = build_rows(lm, [prompt], steer or {}, settings)
    for texts in stream_rows(lm, rows, sampling):
        yield texts[0], texts[1]


def sweep_rows(
    lm: LoadedModel,
    prompt: str,
    pack: AxisPack,
    strengths: Sequence[float],
    settings: SteerSettings = SteerSettings(),
) -> list[Row]:
    """One prompt under one axis at several strengths: one row per strength, for one batch."""
    pack.check_compatible(lm)
    query = query_embeddings(lm, [prompt], pack.pooling, pack.site)[0]  # type: ignore[arg-type]
    return [Row(prompt, axis_edit(pack, s, query, settings).edit) for s in strengths]
