"""The prompting baseline: ask for the pole in words instead of editing hidden states.

The strongest baseline in the steering literature (AxBench found prompting ahead of every
representation method), so every comparison in the evaluation and the studio offers it: the same
prompt with each active axis's pole, chosen by the slider's sign, given as an instruction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import AxisPack
from alignez_core.engine.generation import Row


def pole_instruction(axes: Sequence[tuple[Axis, float]]) -> str:
    """'Answer as a cheerful assistant. Answer as a simple assistant.' for the non-zero axes."""
    return " ".join(
        f"Answer as a {axis.persona(strength > 0)}." for axis, strength in axes if strength != 0
    )


def prompted(prompt: str, axes: Sequence[tuple[Axis, float]]) -> str:
    """`prompt` with the poles asked for in words; unchanged when every strength is 0."""
    instruction = pole_instruction(axes)
    return f"{instruction}\n{prompt}" if instruction else prompt


def prompted_row(prompt: str, axes: Mapping[AxisPack, float]) -> Row:
    """The prompting baseline's row for `prompt`: the active axes' poles asked for in words."""
    return Row(prompted(prompt, [(pack.axis, strength) for pack, strength in axes.items()]))
