"""AlignEZ Studio: steer a language model along axes you name in plain words.

The user's flow in one import::

    import alignez_core as az
    lm = az.load_model()
    pack = az.prefitted_pack("cheerful", lm)          # or az.fit_axis(lm, az.preset("cheerful"))
    print(az.generate(lm, ["Describe a rainy day."], {pack: -1})[0].edited)
    with az.steer(lm, {pack: -1}):                    # or steer your own model.generate(...)
        ...

The stages live in subpackages, each importing only those below it (docs/architecture.md):
`engine` (model, edits, hooks, generation) → `axes` (axis, subspace, pack file) → `steering`,
`measure` → `fitting` → `evaluation`, `interop` → `cli`.
"""

from alignez_core.axes.axis import Axis, preset, preset_names
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_names, prefitted_pack
from alignez_core.engine.catalog import NAMED_MODELS
from alignez_core.engine.generation import LoopGuard, SamplingConfig
from alignez_core.engine.model import LoadedModel, load_model
from alignez_core.engine.turns import TurnEnd, answer_of_turn
from alignez_core.errors import (
    AlignEZError,
    EditError,
    FitCancelled,
    FitError,
    ForeignPackError,
    ModelLoadError,
    PackError,
    UnsupportedModelError,
)
from alignez_core.fitting.fit import FitConfig, fit_axis, refine_axis
from alignez_core.fitting.pairs import PairConfig
from alignez_core.fitting.train import TrainConfig
from alignez_core.steering import SteeredAnswer, SteerSettings, generate, steer, stream


def loop_guard(size: int = 8) -> LoopGuard:
    """A `transformers` `LogitsProcessor` that decodes as our `generate` does: an answer never
    repeats one of its own `size`-token spans verbatim. Use a new one per `generate` call."""
    return LoopGuard(size)


def turn_end(lm: LoadedModel, prompt_length: int) -> TurnEnd:
    """A `transformers` `StoppingCriteria` that ends each row of your own `generate` where a base
    model opens the frame's next turn (as our `generate` does); cut each decoded answer with
    `answer_of_turn`. `prompt_length`: the input's length in tokens."""
    return TurnEnd(lm.tokenizer, prompt_length)


__all__ = [
    "NAMED_MODELS",
    "AlignEZError",
    "Axis",
    "AxisPack",
    "EditError",
    "FitCancelled",
    "FitConfig",
    "FitError",
    "ForeignPackError",
    "LoadedModel",
    "LoopGuard",
    "ModelLoadError",
    "PackError",
    "PairConfig",
    "SamplingConfig",
    "SteerSettings",
    "SteeredAnswer",
    "TrainConfig",
    "TurnEnd",
    "UnsupportedModelError",
    "answer_of_turn",
    "fit_axis",
    "generate",
    "load_model",
    "loop_guard",
    "prefitted_names",
    "prefitted_pack",
    "preset",
    "preset_names",
    "refine_axis",
    "steer",
    "stream",
    "turn_end",
]
