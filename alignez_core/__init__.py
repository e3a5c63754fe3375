"""AlignEZ Studio engine: steer a language model along axes named in plain words.

Data flows model → pairs → activations → subspace → edit → generation; each step is a module.
"""

from .edit import Edit, LayerEdit
from .errors import (
    AlignEZError,
    EditError,
    FitCancelled,
    FitError,
    ForeignPackError,
    ModelLoadError,
    PackError,
    UnsupportedModelError,
)
from .generation import Row, RowOutput, SamplingConfig, generate_grid, generate_rows, stream_rows
from .model import LoadedModel, load_model
from .rules import get_rule, register_kernel, register_rule, rule_names

__all__ = [
    "AlignEZError",
    "Edit",
    "EditError",
    "FitCancelled",
    "FitError",
    "ForeignPackError",
    "LayerEdit",
    "LoadedModel",
    "ModelLoadError",
    "PackError",
    "Row",
    "RowOutput",
    "SamplingConfig",
    "UnsupportedModelError",
    "generate_grid",
    "generate_rows",
    "get_rule",
    "load_model",
    "register_kernel",
    "register_rule",
    "rule_names",
    "stream_rows",
]
