"""The peers' own trained vectors for an axis, as axis packs: repeng 0.4.0 and steering-vectors
0.12.2 (installed for benchmarks only, in `.bench-peers`, by `make bench` / `make results`).

Each peer trains on its own recipe — the axis's two personas as instructions ("Act as a …"),
contrasted on the same fit queries: repeng reads every token and takes the first principal
component per layer (its `pca_diff`); steering-vectors the mean difference at the prompt's last
token on the band's layers. The vectors go through the files users would exchange (repeng's
GGUF, a steering-vectors safetensors), are imported with `alignez_core.interop`, and are then
calibrated with AlignEZ's own clean-edge search, so ±1 is each vector's last fluent multiple:
the comparison is at equal fluency, with the peers' recipe and our units.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from peers import PEERS, make_peers_importable

from alignez_core import LoadedModel
from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import AxisPack
from alignez_core.engine.edit import ALL_LAYERS
from alignez_core.fitting.calibrate import CalibrationConfig, calibrate
from alignez_core.fitting.pairs import persona_prompt
from alignez_core.interop import import_control_vector, import_steering_vector, save_steering_vector
from alignez_core.steering import SteerSettings

# How the peers apply a vector: its own layers (every layer it has), every position, a plain add.
PEER_SETTINGS = SteerSettings(rule="mean_diff", band=ALL_LAYERS, positions="all")
# Multiples of the trained vector; the peers' norms differ by orders of magnitude between recipes.
PEER_GRID = CalibrationConfig(grid=(0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0))


def available() -> bool:
    """Whether `make peers` has installed repeng and steering-vectors."""
    return PEERS.is_dir()


def _import_peers():
    make_peers_importable()
    from repeng import ControlModel, ControlVector, DatasetEntry
    from steering_vectors import train_steering_vector

    return ControlModel, ControlVector, DatasetEntry, train_steering_vector


def _persona_prompts(lm: LoadedModel, axis: Axis, queries: Sequence[str]) -> list[tuple[str, str]]:
    """The instruction our `persona` readout reads, chat-formatted, per query and pole."""
    return [
        tuple(lm.format_prompt(persona_prompt(axis, q, pole)) for pole in (True, False))
        for q in queries
    ]


def train_peer_files(
    lm: LoadedModel, axis: Axis, queries: Sequence[str], band: Sequence[int], folder: Path
) -> tuple[Path, Path, object, object]:
    """Each peer trains with its own code and writes the file it exchanges: repeng's GGUF (every
    layer after the first) and a steering-vectors safetensors (`band`'s layers). Returns the two
    paths and the peers' own trained objects (a repeng `ControlVector`, a `SteeringVector`)."""
    ControlModel, ControlVector, DatasetEntry, train_steering_vector = _import_peers()
    pairs = _persona_prompts(lm, axis, queries)
    control = ControlModel(lm.model, list(range(1, lm.num_layers)))
    try:
        dataset = [DatasetEntry(positive=p, negative=n) for p, n in pairs]
        vector = ControlVector.train(control, lm.tokenizer, dataset, batch_size=8)
    finally:
        control.unwrap()  # hands the model back unwrapped, as every other path expects
    gguf = folder / f"repeng-{axis.positive}.gguf"
    vector.export_gguf(str(gguf))
    trained = train_steering_vector(lm.model, lm.tokenizer, pairs, layers=list(band))
    safetensors = folder / f"steering-vectors-{axis.positive}.safetensors"
    save_steering_vector(trained.layer_activations, safetensors)
    return gguf, safetensors, vector, trained


def peer_packs(
    lm: LoadedModel, axis: Axis, queries: Sequence[str], band: Sequence[int]
) -> dict[str, AxisPack]:
    """{"repeng": pack, "steering-vectors": pack}, each calibrated on the first fit queries."""
    with tempfile.TemporaryDirectory() as folder:
        gguf, safetensors, _, _ = train_peer_files(lm, axis, queries, band, Path(folder))
        packs = {
            "repeng": import_control_vector(gguf, lm, axis.name),
            "steering-vectors": import_steering_vector(safetensors, lm, axis.name),
        }
    for pack in packs.values():
        pack.axis = axis
        pack.calibration = calibrate(lm, pack, queries, PEER_SETTINGS, PEER_GRID)
    return packs
