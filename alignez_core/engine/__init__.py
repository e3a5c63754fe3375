"""Stage 1, the engine: load a model, edit its hidden states per row, generate.

Knows nothing of axes. `model` (load, layout) → `edit` (edits as data, a batch's plan) →
`rules` (pure rules and their in-place kernels) → `hooks` (per-call forward hooks) →
`generation` (batched rows, streaming, the loop guard; `turns`: where a base model's answer
ends); `catalog` names the models shipped through PyPI; `compiled` and `warmup` decode through
a compiled step where it pays.
"""

from .edit import BatchPlan, Edit, LayerEdit, compile_plan
from .generation import Row, RowOutput, SamplingConfig, generate_grid, generate_rows, stream_rows
from .model import LoadedModel, load_model
from .rules import edit_kernel, get_rule, register_kernel, register_rule, rule_names
from .turns import TurnEnd, answer_of_turn

__all__ = [
    "BatchPlan",
    "Edit",
    "LayerEdit",
    "LoadedModel",
    "Row",
    "RowOutput",
    "SamplingConfig",
    "TurnEnd",
    "answer_of_turn",
    "compile_plan",
    "edit_kernel",
    "generate_grid",
    "generate_rows",
    "get_rule",
    "load_model",
    "register_kernel",
    "register_rule",
    "rule_names",
    "stream_rows",
]
