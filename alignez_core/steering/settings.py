"""How slider values become rule strengths: the rule, the layers, the positions, the units.

Units (docs/method.md §5): a pack read at the residual stream pushes the additive rules by
slider × c × ‖h_l‖, with ‖h_l‖ the layer's typical residual norm stored at fit time and c the
pack's calibrated clean edge for the slider's sign, so ±1 is the last fluent strength measured
on the axis's own queries. Packs read at the MLP output push by slider × 0.25 × the token's
MLP-output norm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.edit import Positions, check_positions, check_strength, slider_rule
from alignez_core.engine.separate import SEPARATIONS
from alignez_core.errors import EditError

ADDITIVE_RULES = ("subspace", "mean_diff")
# Slider value → rule strength where a pack carries no calibration. `project` is exactly α. The
# additive rules push by a fraction of a norm per edited layer: of the layer's typical residual
# norm for residual packs (the probe's clean point on SmolLM2), of the token's own MLP-output
# norm for MLP packs.
DEFAULT_SCALE = {"project": 1.0, "tanh": 1.0, "subspace": 0.04, "mean_diff": 0.04}
MLP_SITE_SCALE = {"project": 1.0, "tanh": 1.0, "subspace": 0.25, "mean_diff": 0.25}
DEFAULT_BAND = (0.25, 0.7)  # for packs that store no band of their own
DEFAULT_BUDGET = 1.0
# How axes sharing a layer are kept apart: `separate.py`'s orthogonal pushes, or `assign.py`'s
# one axis per shared layer
KeepApart = Literal["ordered", "symmetric", "assign"]
KEEP_APART: tuple[str, ...] = (*SEPARATIONS, "assign")


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
    # Several axes at one layer: their pushes made orthogonal first (`separate.py`: "ordered"
    # or "symmetric"), or the layer given to one of them ("assign", `assign.py`); None leaves
    # them as fitted.
    separate: KeepApart | None = None
    # Several axes at one layer: a joint calibration's common scale for this combination
    # (`fitting/joint.py`), applied to every push at a shared layer in place of the budget.
    shared_scale: float | None = None

    def __post_init__(self) -> None:
        if self.rule is not None:  # an older name (`caa`, `steer`, `paper`) reads as today's
            object.__setattr__(self, "rule", slider_rule(self.rule))
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
        if (
            self.shared_scale is not None
            and not 0 < check_strength(self.shared_scale, "shared_scale") <= 2
        ):
            raise EditError(f"shared_scale must be in (0, 2] or None, got {self.shared_scale}.")
        if self.separate is not None and self.separate not in KEEP_APART:
            raise EditError(
                f"separate must be one of {', '.join(KEEP_APART)} or None, got {self.separate!r}."
            )

    def band_layers(self, num_layers: int) -> tuple[int, ...]:
        """The layers of the band on a model of `num_layers` (never empty); with no band set
        (no pack to take one from), `DEFAULT_BAND`'s."""
        band = self.band or DEFAULT_BAND
        start = min(round(band[0] * num_layers), num_layers - 1)
        end = min(round(band[1] * num_layers), num_layers)  # never past the last layer
        return tuple(range(start, max(end, start + 1)))

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

    @property
    def chosen_rule(self) -> str:
        """The rule, once `for_pack` has filled in what these settings left open."""
        if self.rule is None:
            raise EditError("No rule chosen: take the pack's with SteerSettings.for_pack.")
        return self.rule

    @property
    def chosen_positions(self) -> Positions:
        """The positions, once `for_pack` has filled in what these settings left open."""
        return check_positions(self.positions or "last")

    def scale_for(self, pack: AxisPack, strength: float) -> float:
        """Rule strength per unit of slider for this pack and the slider's sign."""
        if self.scale is not None:
            return self.scale
        if pack.site == "mlp":
            return MLP_SITE_SCALE[self.chosen_rule]
        if self.rule in ADDITIVE_RULES and pack.calibration is not None:
            return pack.calibration.for_sign(strength)
        return DEFAULT_SCALE[self.chosen_rule]
