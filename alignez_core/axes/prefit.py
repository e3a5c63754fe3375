"""Pre-fitted packs: presets fitted once on each embedded model and shipped in assets/packs.

A demo or a Space can then steer at once, where a fit takes minutes on a CPU. The packs are
exactly what `alignez fit --preset NAME` writes with every default (`make packs` rebuilds them;
`make packs MODEL=gemma3-270m` another named model's), and they are refused for any model but
the one they were fitted on. The default model's packs lie in assets/packs itself, another named
model's in a folder named after it (assets/packs/gemma3-270m).
"""

from __future__ import annotations

from pathlib import Path

from alignez_core.engine.catalog import SMOLLM2, named_model
from alignez_core.errors import PackError

from .axis import ASSETS
from .pack import AxisPack

PACKS = ASSETS / "packs"


def packs_folder(model_id: str | None = None) -> Path | None:
    """Where the packs of a model ship (None or "" is the default model); None for a model that
    is not named (`alignez_core.engine.catalog`), which ships none."""
    named = named_model(model_id)
    if named is None:
        return None
    return PACKS if named is SMOLLM2 else PACKS / named.name


def prefitted_names(model_id: str | None = None) -> list[str]:
    """The presets that ship a pre-fitted pack for the model (the default model when None)."""
    folder = packs_folder(model_id)
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors"))


def prefitted_path(name: str, model_id: str | None = None) -> Path:
    """The shipped file for preset `name` on the model, or a PackError listing what ships."""
    folder = packs_folder(model_id)
    if folder is None or name not in prefitted_names(model_id):
        shipped = ", ".join(prefitted_names(model_id)) or "none"
        model = f" on {model_id}" if model_id else ""
        raise PackError(
            f"No pre-fitted pack for {name!r}{model} (shipped: {shipped}); fit it instead."
        )
    return folder / f"{name}.safetensors"


def prefitted_pack(name: str, lm=None) -> AxisPack:
    """The shipped pack for preset `name`: with `lm`, the one fitted on that model, refused when
    none was (directions from one model mean nothing in another, even one of the same shape);
    without, the default model's."""
    if lm is None:
        return AxisPack.load(prefitted_path(name))
    if name in prefitted_names(lm.model_id):
        pack = AxisPack.load(prefitted_path(name, lm.model_id))
    else:
        pack = AxisPack.load(prefitted_path(name))  # to name the model it was fitted on
    if lm.model_id != pack.model_id:
        raise PackError(
            f"The pre-fitted {name} pack was fitted on {pack.model_id}, and the loaded model "
            f"is {lm.model_id}: fit the axis on this model instead (Fit axis, or "
            f"`alignez fit --preset {name}`)."
        )
    pack.check_compatible(lm)
    return pack
