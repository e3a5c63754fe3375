"""Pre-fitted packs: presets fitted once on the embedded model and shipped in assets/packs.

A demo or a Space can then steer at once, where a fit takes 45–75 s on a CPU. The packs are
exactly what `alignez fit --preset NAME` writes with every default (`make packs` rebuilds them),
and they are refused for any model but the one they were fitted on.
"""

from __future__ import annotations

from pathlib import Path

from alignez_core.errors import PackError

from .axis import ASSETS
from .pack import AxisPack

PACKS = ASSETS / "packs"


def prefitted_names() -> list[str]:
    """The presets that ship a pre-fitted pack."""
    return sorted(p.stem for p in PACKS.glob("*.safetensors")) if PACKS.is_dir() else []


def prefitted_path(name: str) -> Path:
    """The shipped file for preset `name`, or a PackError listing what ships."""
    if name not in prefitted_names():
        shipped = ", ".join(prefitted_names()) or "none"
        raise PackError(f"No pre-fitted pack for {name!r} (shipped: {shipped}); fit it instead.")
    return PACKS / f"{name}.safetensors"


def prefitted_pack(name: str, lm=None) -> AxisPack:
    """The shipped pack for preset `name`; with `lm`, refused unless it is the model it was fitted
    on (directions from one model mean nothing in another, even one of the same shape)."""
    pack = AxisPack.load(prefitted_path(name))
    if lm is not None:
        if lm.model_id != pack.model_id:
            raise PackError(
                f"The pre-fitted {name} pack was fitted on {pack.model_id}, and the loaded model "
                f"is {lm.model_id}: fit the axis on this model instead (Fit axis, or "
                f"`alignez fit --preset {name}`)."
            )
        pack.check_compatible(lm)
    return pack
