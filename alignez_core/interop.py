"""Axes that travel: llama.cpp / repeng control-vector GGUF files out and in, steering-vectors in.

A control vector is one float32 `direction.N` tensor per layer, added to the output of decoder
block N (0-based; the residual stream, our `residual` site — the convention of repeng's
`ControlModel`, which writes these files, and of llama.cpp's `--control-vector`). Export takes
the axis's *fixed* direction, the unit mean difference (CAA style; the per-query subspace
selection cannot travel in a file), times the calibrated strength for the sign asked times the
layer's residual norm, on the layers the settings edit. Import builds a rank-1 pack whose slider
+1 adds exactly the file's vectors (−1 subtracts them).

steering-vectors keeps a `SteeringVector` (per-layer vectors added to decoder block outputs) in
memory only; `save_steering_vector` writes its `layer_activations` as safetensors (tensors
named by layer index, `layer_type` in the metadata), which `import_steering_vector` reads the
same way. `load_axis_file` opens any of the three by what the file is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import AxisPack, SliderCalibration
from alignez_core.axes.subspace import LayerSubspace
from alignez_core.errors import ForeignPackError, PackError
from alignez_core.steering import SteerSettings

ARCH = "controlvector"
MAX_VECTOR_FILE_BYTES = 64 * 1024 * 1024
# steering-vectors files: tensors named "12", "layer.12", "layers.12" or "layer_activations.12"
_LAYER_NAME = re.compile(r"^(?:(?:layer|layers|layer_activations)\.)?(\d{1,4})$")


def control_vectors(
    pack: AxisPack, strength: float = 1.0, settings: SteerSettings = SteerSettings()
) -> dict[int, torch.Tensor]:
    """Per edited layer, the vector slider `strength` adds (fixed direction, calibrated units)."""
    if pack.site != "residual" or not pack.residual_norms:
        raise PackError(
            f"{pack.name!r} is read at the MLP output; control vectors are added to the residual "
            "stream. Refit it with the residual readout (the default) to export it."
        )
    if not math.isfinite(strength) or strength == 0:
        raise PackError(f"export strength must be a non-zero number, got {strength}.")
    settings = settings.for_pack(pack)
    scale = strength * settings.scale_for(pack, strength)
    layers = settings.layers or settings.band_layers(pack.num_layers)
    vectors = {}
    # llama.cpp refuses a file holding direction.0 ("invalid (zero) direction tensor layer
    # index"): its control vectors start at block 1, so block 0 never travels.
    for layer in (i for i in layers if 1 <= i < pack.num_layers):
        mean = pack.layers[layer].mean_difference.float()
        if pack.layers[layer].rank > 0 and mean.norm() > 1e-8:
            vectors[layer] = scale * pack.residual_norms[layer] * mean / mean.norm()
    if not vectors:
        raise PackError(f"{pack.name!r} has no direction on the layers chosen for export.")
    return vectors


def export_control_vector(
    pack: AxisPack,
    path: str | Path,
    strength: float = 1.0,
    settings: SteerSettings = SteerSettings(),
) -> Path:
    """Write a llama.cpp control-vector GGUF (`--control-vector FILE`) for slider `strength`."""
    import gguf

    vectors = control_vectors(pack, strength, settings)
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(f"{ARCH}.model_hint", pack.model_id)
    writer.add_uint32(f"{ARCH}.layer_count", len(vectors))
    writer.add_string("alignez.axis", json.dumps(pack.axis.to_dict()))
    writer.add_uint32("alignez.num_layers", pack.num_layers)
    writer.add_float32("alignez.strength", float(strength))
    for layer, vector in sorted(vectors.items()):
        writer.add_tensor(f"direction.{layer}", vector.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _check_size(path: Path, what: str) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PackError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if size > MAX_VECTOR_FILE_BYTES:
        raise PackError(f"{path.name} is larger than {what} can be.")


def _field(reader, key: str):
    field = reader.get_field(key)
    if field is None or not field.parts:
        return None
    value = field.parts[-1]
    return bytes(value).decode("utf-8", "replace") if field.types[-1].name == "STRING" else value[0]


def import_control_vector(path: str | Path, lm=None, name: str | None = None) -> AxisPack:
    """A control-vector GGUF (ours, repeng's, llama.cpp's) as a rank-1 axis pack.

    With `lm`, the vectors must match its hidden size and fit its depth; without it, the depth
    is the file's `alignez.num_layers` or the highest layer + 1.
    """
    import gguf

    path = Path(path)
    _check_size(path, "a control vector")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises bare ValueErrors/struct errors on foreign files
        raise PackError(f"{path.name} is not a readable GGUF file ({exc}).") from None
    if _field(reader, "general.architecture") != ARCH:
        raise PackError(f"{path.name} is a GGUF file but not a control vector (architecture).")
    vectors: dict[int, torch.Tensor] = {}
    for tensor in reader.tensors:
        if tensor.name.startswith("direction."):
            try:
                layer = int(tensor.name.split(".", 1)[1])
            except ValueError:
                raise PackError(f"{path.name}: bad tensor name {tensor.name!r}.") from None
            vectors[layer] = torch.tensor(np.asarray(tensor.data, dtype=np.float32)).flatten()
    if not vectors or any(not torch.isfinite(v).all() for v in vectors.values()):
        raise PackError(f"{path.name} holds no finite direction.N tensors.")
    hint = _field(reader, f"{ARCH}.model_hint") or "unknown model"
    stored = _field(reader, "alignez.num_layers")
    axis_json = _field(reader, "alignez.axis")
    axis = Axis(**json.loads(axis_json)) if axis_json else None
    return _rank1_pack(vectors, lm, name, axis, hint, stored, path, "control-vector GGUF")


def _rank1_pack(
    vectors: dict[int, torch.Tensor],
    lm,
    name: str | None,
    axis: Axis | None,
    hint: str,
    stored_depth: int | None,
    path: Path,
    kind: str,
) -> AxisPack:
    """A pack whose slider ±1 adds ± exactly `vectors` to the residual stream at their layers."""
    sizes = {v.numel() for v in vectors.values()}
    if len(sizes) != 1:
        raise PackError(f"{path.name}: directions of different sizes {sorted(sizes)}.")
    hidden = sizes.pop()
    depth = lm.num_layers if lm is not None else int(stored_depth or max(vectors) + 1)
    if lm is not None and (hidden != lm.hidden_size or max(vectors) >= lm.num_layers):
        raise PackError(
            f"{path.name} was made for {hint} (hidden size {hidden}, layers up to "
            f"{max(vectors)}); the loaded model {lm.model_id} has hidden size {lm.hidden_size} "
            f"and {lm.num_layers} layers."
        )
    axis = axis or Axis(name or path.stem, f"{path.stem} +", f"{path.stem} −")
    layers, norms = [], []
    for layer in range(depth):
        vector = vectors.get(layer)
        if vector is None or vector.norm() < 1e-8:
            layers.append(
                LayerSubspace(torch.zeros(0, hidden), torch.zeros(0), torch.zeros(hidden), 0, 0)
            )
            norms.append(1.0)
            continue
        norm = float(vector.norm())
        layers.append(LayerSubspace((vector / norm)[None], torch.tensor([norm]), vector, 0, 0))
        norms.append(norm)
    return AxisPack(
        axis=axis if name is None else Axis(name, axis.positive, axis.negative),
        model_id=hint,
        hidden_size=hidden,
        layers=layers,
        site="residual",
        residual_norms=norms,
        # ±1 adds exactly the file's vectors: c = 1 × each layer's vector norm along its unit
        calibration=SliderCalibration(1.0, 1.0, (), {}, 0, {"imported": path.name}, 0.0),
        fit_config={"imported_from": f"{kind} {path.name}"},
        # steered as its makers apply it: the fixed vector, added at every position
        rule_defaults={"rule": "mean_diff", "positions": "all", "band": None},
    )


def save_steering_vector(
    layer_activations: Mapping[int, torch.Tensor],
    path: str | Path,
    layer_type: str = "decoder_block",
    model_hint: str = "",
) -> Path:
    """Write a steering-vectors `SteeringVector`'s `layer_activations` as safetensors.

    `save_steering_vector(vector.layer_activations, "v.safetensors", vector.layer_type)`.
    """
    tensors = {str(int(layer)): v.detach().float().cpu().contiguous().flatten()
               for layer, v in layer_activations.items()}  # fmt: skip
    if not tensors:
        raise PackError("A steering vector needs at least one layer.")
    path = Path(path)
    save_file(tensors, str(path), metadata={"layer_type": layer_type, "model_hint": model_hint})
    return path


def import_steering_vector(path: str | Path, lm=None, name: str | None = None) -> AxisPack:
    """A steering-vectors `SteeringVector` saved as safetensors, as a rank-1 axis pack.

    Only `decoder_block` vectors (added to a block's output, the residual stream) have a place
    to go; steering-vectors' other layer types (attention, MLP) are refused with a message.
    """
    path = Path(path)
    _check_size(path, "a steering vector")
    try:
        with safe_open(str(path), framework="pt") as reader:
            meta = reader.metadata() or {}
            names = list(reader.keys())
            vectors = {}
            for key in names:
                match = _LAYER_NAME.match(key)
                if match is None:
                    raise PackError(
                        f"{path.name}: tensor {key!r} is not named by a layer index; a steering "
                        "vector file holds one tensor per layer, named like '12'."
                    )
                vectors[int(match.group(1))] = reader.get_tensor(key).float().flatten()
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise PackError(f"{path.name} is not a valid safetensors file ({exc}).") from None
    layer_type = meta.get("layer_type", "decoder_block")
    if layer_type != "decoder_block":
        raise PackError(
            f"{path.name} edits steering-vectors' {layer_type!r} layers; only 'decoder_block' "
            "vectors (added to the residual stream) can be imported."
        )
    if not vectors or any(not torch.isfinite(v).all() for v in vectors.values()):
        raise PackError(f"{path.name} holds no finite per-layer vectors.")
    hint = meta.get("model_hint") or "unknown model"
    return _rank1_pack(vectors, lm, name, None, hint, None, path, "steering-vectors file")


def load_axis_file(path: str | Path, lm=None, name: str | None = None) -> AxisPack:
    """An axis pack, a control-vector GGUF or a steering-vectors file, by what the file holds."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return import_control_vector(path, lm, name)
    try:
        return AxisPack.load(path, lm)
    except ForeignPackError:
        return import_steering_vector(path, lm, name)
