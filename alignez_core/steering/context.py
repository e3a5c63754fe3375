"""`steer()`: edit a model's own forwards, so a pack steers `transformers`' `generate`, a
pipeline or a custom sampling loop, not only ours.

Inside `with steer(model, {pack: -1}):` every forward of `model` run by the calling thread or
task is edited as our `generate` edits its edited row: the pack's calibrated units, rule, band
and positions, several packs combined within the budget. What cannot apply without the prompt
falls back the way the control-vector export does (docs/api.md): the `subspace` rule (the mean
difference restricted to the prompt's subspace) pushes along the plain mean difference
(`mean_diff`), and per-prompt layer ranking (`top_n`) and the amplifying rules (`project`,
`tanh`) are refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.architecture import DecoderLayout, find_decoder_layout, hidden_size_of
from alignez_core.engine.edit import compile_plan
from alignez_core.engine.hooks import EditHooks, active_plan, hooks_for
from alignez_core.engine.model import LoadedModel, execution_device
from alignez_core.errors import EditError

from .plan import AxisEdit, axis_edit, combine
from .settings import SteerSettings

# What each rule becomes without a prompt: `subspace` selects its subspace per prompt, so it
# travels as its prompt-free form, the unit mean difference (as `export` writes it).
PROMPT_FREE_RULE = {"subspace": "mean_diff", "mean_diff": "mean_diff"}


@dataclass(frozen=True)
class _Target:
    """What `steer()` needs of a model: its layout, shared hooks, depth, width and name."""

    model: nn.Module
    layout: DecoderLayout
    hooks: EditHooks
    model_id: str

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers

    @property
    def hidden_size(self) -> int:
        return hidden_size_of(self.model)

    def layer_device(self, site: str, layer: int) -> torch.device:
        return execution_device(self.layout.modules_at(site)[layer])  # type: ignore[arg-type]


def _target(model: LoadedModel | nn.Module) -> LoadedModel | _Target:
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise EditError(
            f"steer() takes a LoadedModel or a transformers model, got {type(model).__name__}."
        )
    layout = find_decoder_layout(model)
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
    return _Target(model, layout, hooks_for(model, layout), name)


def _prompt_free_edit(pack: AxisPack, strength: float, settings: SteerSettings) -> AxisEdit:
    """The pack's edit with no prompt to condition on (see the module docstring)."""
    own = settings.for_pack(pack)
    if own.top_n is not None:
        raise EditError(
            f"top_n ranks layers per prompt; steer() has no prompt. Leave top_n unset for "
            f"{pack.name!r}, or use alignez_core.generate."
        )
    rule = PROMPT_FREE_RULE.get(own.rule or "")
    if rule is None:
        raise EditError(
            f"Rule {own.rule!r} works on each prompt's own subspace; steer() has no prompt. "
            f"Use rule 'mean_diff' for {pack.name!r}, or alignez_core.generate."
        )
    width = pack.layers[0].mean_difference.shape[-1] if pack.layers else 0
    no_prompt = torch.zeros(pack.num_layers, width)  # mean_diff's layers and directions ignore it
    return axis_edit(pack, strength, no_prompt, replace(own, rule=rule))


@contextmanager
def steer(
    model: LoadedModel | nn.Module,
    axes: Mapping[AxisPack, float],
    settings: SteerSettings | None = None,
) -> Iterator[None]:
    """Edit every forward of `model` run by this thread or task while the block runs.

    `model` is a `LoadedModel` or a plain `transformers` causal LM; `axes` maps packs to slider
    values, as `generate` takes them. Other threads, and the engine's own generation on the same
    model, are not edited; the hooks are removed when the block exits, on an exception too.
    Nested blocks add their edits to the enclosing one's. Decode with `loop_guard()` to get the
    answers ±1 was calibrated for.
    """
    settings = settings or SteerSettings()
    target = _target(model)
    for pack in axes:
        pack.check_compatible(target)
    edits = [_prompt_free_edit(pack, s, settings) for pack, s in axes.items() if s != 0]
    edit = combine(edits, settings)
    plan = compile_plan([edit], target.num_layers, target.hidden_size, target.layer_device)
    shared = plan.for_every_row() if plan is not None else None
    enclosing = active_plan()
    if enclosing is not None:
        shared = enclosing if shared is None else enclosing + shared
    with target.hooks.applying(shared):
        yield
