"""Stage 3, steering: fitted axes and slider values become per-row edits, and answers.

`settings` (slider units) → `plan` (per-prompt layer edits, several axes combined) → `answers`
(base and edited rows of one batch) or `context` (`steer()`: edit a model's own forwards).
"""

from alignez_core.engine.edit import SLIDER_RULES

from .answers import (
    ComparisonRows,
    SteeredAnswer,
    build_rows,
    comparison_rows,
    generate,
    steered_rows,
    stream,
    sweep_rows,
)
from .context import steer
from .plan import AxisEdit, axis_edit, combine, layer_budgets, plan_edits
from .settings import (
    ADDITIVE_RULES,
    DEFAULT_BAND,
    DEFAULT_BUDGET,
    DEFAULT_SCALE,
    MLP_SITE_SCALE,
    SteerSettings,
)

__all__ = [
    "ADDITIVE_RULES",
    "DEFAULT_BAND",
    "DEFAULT_BUDGET",
    "DEFAULT_SCALE",
    "MLP_SITE_SCALE",
    "SLIDER_RULES",
    "AxisEdit",
    "ComparisonRows",
    "SteerSettings",
    "SteeredAnswer",
    "axis_edit",
    "build_rows",
    "combine",
    "comparison_rows",
    "generate",
    "layer_budgets",
    "plan_edits",
    "steer",
    "steered_rows",
    "stream",
    "sweep_rows",
]
