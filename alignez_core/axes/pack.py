"""Axis packs: a fitted axis as one portable file (safetensors tensors + JSON metadata).

Never pickle: a pack is read with `safetensors` only, and everything in it is validated (format,
version, shapes against the metadata's claims, a content hash) before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from alignez_core.engine.architecture import SITES
from alignez_core.engine.edit import ALL_LAYERS, LEGACY_RULE_NAMES, POSITIONS, SLIDER_RULES
from alignez_core.errors import FitError, ForeignPackError, PackError

from .axis import Axis
from .subspace import LayerSubspace

FORMAT = "alignez-axis-pack"
FORMAT_VERSION = 1
MAX_PACK_BYTES = 256 * 1024 * 1024
_META_KEY = "alignez"
LEGACY_SITE = "mlp"  # packs saved before the readout site was stored were read at the MLP output


def _safetensors_head(head: bytes, size: int) -> bool:
    """A safetensors file opens with its JSON header's length (u64, little-endian), then `{`.

    That length's low byte may be 0x80, a pickle's first byte, so this is checked first.
    """
    return len(head) == 9 and head[8:] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


@dataclass(frozen=True)
class SliderCalibration:
    """Where slider ±1 sits for this axis, per sign, found at fit time (`calibrate.py`).

    `positive` / `negative` are c, the push per edited layer as a fraction of that layer's
    typical residual norm: slider s > 0 adds s·positive·‖h_l‖ along the axis, s < 0 adds
    s·negative·‖h_l‖. Each is the last strength whose answers stayed fluent on the fit's own
    queries; `points` keeps every measured strength so a user can see why.
    """

    positive: float
    negative: float
    points: tuple[dict[str, Any], ...] = ()
    base: dict[str, float] = field(default_factory=dict)
    queries: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def for_sign(self, strength: float) -> float:
        return self.positive if strength > 0 else self.negative

    def to_dict(self) -> dict[str, Any]:
        return {
            "positive": self.positive,
            "negative": self.negative,
            "points": list(self.points),
            "base": self.base,
            "queries": self.queries,
            "settings": self.settings,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliderCalibration:
        positive, negative = float(data["positive"]), float(data["negative"])
        if not all(0 < c < 10 for c in (positive, negative)):
            raise PackError(f"calibration strengths must be in (0, 10), got {positive}/{negative}.")
        return cls(
            positive,
            negative,
            tuple(dict(p) for p in data.get("points", [])),
            {k: float(v) for k, v in dict(data.get("base", {})).items()},
            int(data.get("queries", 0)),
            dict(data.get("settings", {})),
            float(data.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class TrainingLog:
    """What training did, stored in the pack: per epoch (0 = the mean difference, before any
    step) the training and held-out loss, and the held-out margin (log-likelihood of the
    preferred answer minus the rejected one's, averaged over both signs, relative to the
    unedited model)."""

    config: dict[str, Any]
    layers: tuple[int, ...]
    train_losses: tuple[float, ...]
    held_out_losses: tuple[float, ...]
    held_out_margins: tuple[float, ...]
    best_epoch: int
    train_pairs: int
    held_out_pairs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingLog:
        floats = ("train_losses", "held_out_losses", "held_out_margins")
        return cls(
            config=dict(data["config"]),
            layers=tuple(int(i) for i in data["layers"]),
            best_epoch=int(data["best_epoch"]),
            train_pairs=int(data["train_pairs"]),
            held_out_pairs=int(data["held_out_pairs"]),
            seconds=float(data["seconds"]),
            **{key: tuple(float(v) for v in data[key]) for key in floats},
        )


@dataclass(frozen=True)
class PreferencePair:
    """One query answered as the positive and as the negative pole."""

    query: str
    positive: str
    negative: str
    positive_insight: str
    negative_insight: str
    sample: int = 0


@dataclass(eq=False)
class AxisPack:
    """A fitted axis: per-layer subspaces, the pairs they came from, and how they were made.

    Packs hash by identity, so they can key a `{pack: strength}` mapping.
    """

    axis: Axis
    model_id: str
    hidden_size: int
    layers: list[LayerSubspace]
    pooling: str = "mean"
    site: str = "residual"  # where Φ was read, and where the additive rules push
    residual_norms: list[float] = field(default_factory=list)  # per layer, over the pairs
    calibration: SliderCalibration | None = None
    pairs: list[PreferencePair] = field(default_factory=list)
    # Per layer, (2K, 2): every pair's positive then negative embedding on the top-2 directions.
    pair_coords: list[torch.Tensor] = field(default_factory=list)
    fit_config: dict[str, Any] = field(default_factory=dict)
    rule_defaults: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    training: TrainingLog | None = None  # how a trained fit's directions were trained
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def name(self) -> str:
        return self.axis.name

    def ranks(self) -> list[int]:
        return [layer.rank for layer in self.layers]

    def pairs_kept(self) -> list[int]:
        return [layer.pairs_kept for layer in self.layers]

    def top2(self, layer: int) -> torch.Tensor:
        """(2, d): the layer's first two directions, zero-padded where the rank is lower."""
        basis = self.layers[layer].basis[:2]
        return torch.cat([basis, torch.zeros(2 - basis.shape[0], self.hidden_size)])

    def fitted_rule(self) -> str:
        """The rule this pack's slider was calibrated with (`subspace` for packs that say none;
        an older name reads as today's)."""
        rule = str(self.rule_defaults.get("rule") or "subspace")
        return LEGACY_RULE_NAMES.get(rule, rule)  # packs saved before the rules were renamed

    def fitted_positions(self) -> str:
        """The positions this pack's slider was calibrated with (`last` where none is said)."""
        return str(self.rule_defaults.get("positions") or "last")

    def fitted_band(self) -> tuple[float, float] | None:
        """The band (fractions of depth) this pack was calibrated on; None where it says none."""
        if "band" not in self.rule_defaults:
            return None
        band = self.rule_defaults["band"]
        return ALL_LAYERS if band is None else (float(band[0]), float(band[1]))

    def check_compatible(self, lm) -> None:
        """Refuse to steer a model this pack was not made for (hidden size / depth)."""
        if lm.hidden_size != self.hidden_size or lm.num_layers != self.num_layers:
            raise PackError(
                f"Axis pack {self.name!r} was made for {self.model_id} (hidden size "
                f"{self.hidden_size}, {self.num_layers} layers); the loaded model {lm.model_id} "
                f"has hidden size {lm.hidden_size} and {lm.num_layers} layers."
            )

    # --- file format -------------------------------------------------------------------------

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for i, layer in enumerate(self.layers):
            tensors[f"layers.{i}.basis"] = layer.basis.float().contiguous()
            tensors[f"layers.{i}.singular_values"] = layer.singular_values.float().contiguous()
            tensors[f"layers.{i}.mean_difference"] = layer.mean_difference.float().contiguous()
            coords = self.pair_coords[i] if self.pair_coords else torch.zeros(0, 2)
            tensors[f"layers.{i}.pair_coords"] = coords.float().contiguous()
        return tensors

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "axis": self.axis.to_dict(),
            "model_id": self.model_id,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "pooling": self.pooling,
            "site": self.site,
            "residual_norms": [float(n) for n in self.residual_norms],
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "layers": [
                {
                    "rank": layer.rank,
                    "spectrum_size": int(layer.singular_values.numel()),
                    "pairs_kept": layer.pairs_kept,
                    "pairs_total": layer.pairs_total,
                }
                for layer in self.layers
            ],
            "pairs": [vars(pair) for pair in self.pairs],
            "fit_config": self.fit_config,
            "rule_defaults": self.rule_defaults,
            "timings": self.timings,
            "training": self.training.to_dict() if self.training else None,
            "created": self.created,
        }

    def to_bytes(self) -> bytes:
        tensors = self._tensors()
        meta = self._metadata()
        meta["content_hash"] = _content_hash(meta, tensors)
        return save(tensors, metadata={_META_KEY: json.dumps(meta)})

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves half a pack."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, lm=None) -> AxisPack:
        """Read and validate a pack; with `lm`, also refuse one made for another model shape."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PackError(f"Cannot read axis pack {path}: {exc.strerror or exc}.") from None
        if size > MAX_PACK_BYTES:
            raise PackError(
                f"{path.name} is {size} bytes; axis packs are capped at {MAX_PACK_BYTES}."
            )
        with path.open("rb") as f:
            head = f.read(9)
        if not _safetensors_head(head, size) and (head[:1] == b"\x80" or head[:2] == b"PK"):
            raise PackError(
                f"{path.name} looks like a pickle/torch.save file; axis packs are safetensors "
                "and pickles are refused without being loaded."
            )
        try:
            with safe_open(str(path), framework="pt") as reader:
                raw_meta = (reader.metadata() or {}).get(_META_KEY)
                tensors = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise PackError(f"{path.name} is not a valid safetensors file ({exc}).") from None
        pack = cls._from_parts(raw_meta, tensors, path.name)
        if lm is not None:
            pack.check_compatible(lm)
        return pack

    @classmethod
    def _from_parts(cls, raw_meta: str | None, tensors: dict[str, torch.Tensor], name: str):
        if raw_meta is None:
            raise ForeignPackError(f"{name} is a safetensors file but not an AlignEZ axis pack.")
        try:
            meta = json.loads(raw_meta)
        except json.JSONDecodeError:
            raise PackError(f"{name}: the axis pack metadata is not valid JSON.") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ForeignPackError(f"{name} is a safetensors file but not an AlignEZ axis pack.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise PackError(
                f"{name} has pack format version {meta.get('format_version')!r}; this version of "
                f"AlignEZ reads version {FORMAT_VERSION}."
            )
        try:
            return cls._validated(meta, tensors, name)
        except (KeyError, TypeError, ValueError, FitError) as exc:
            if isinstance(exc, PackError):
                raise
            raise PackError(f"{name}: malformed axis pack metadata ({exc}).") from None

    @classmethod
    def _validated(cls, meta: dict, tensors: dict[str, torch.Tensor], name: str) -> AxisPack:
        hidden, num_layers = int(meta["hidden_size"]), int(meta["num_layers"])
        layer_meta = meta["layers"]
        if len(layer_meta) != num_layers or hidden < 1:
            raise PackError(
                f"{name}: metadata lists {len(layer_meta)} layers, claims {num_layers}."
            )
        expected_keys = {
            f"layers.{i}.{part}"
            for i in range(num_layers)
            for part in ("basis", "singular_values", "mean_difference", "pair_coords")
        }
        if set(tensors) != expected_keys:
            raise PackError(f"{name}: tensors do not match the layers the metadata describes.")
        layers, coords = [], []
        pairs = [PreferencePair(**pair) for pair in meta.get("pairs", [])]
        for i, info in enumerate(layer_meta):
            basis = tensors[f"layers.{i}.basis"]
            sigma = tensors[f"layers.{i}.singular_values"]
            mean = tensors[f"layers.{i}.mean_difference"]
            if (
                tuple(basis.shape) != (int(info["rank"]), hidden)
                or tuple(sigma.shape) != (int(info["spectrum_size"]),)
                or tuple(mean.shape) != (hidden,)
            ):
                raise PackError(
                    f"{name}: layer {i} tensors have shapes {tuple(basis.shape)}, "
                    f"{tuple(sigma.shape)}, {tuple(mean.shape)}, which the metadata does not match."
                )
            coord = tensors[f"layers.{i}.pair_coords"]
            if tuple(coord.shape) not in ((2 * len(pairs), 2), (0, 2)):
                raise PackError(f"{name}: layer {i} pair coordinates do not match the pairs.")
            if not all(torch.isfinite(t).all() for t in (basis, sigma, mean, coord)):
                raise PackError(f"{name}: layer {i} holds NaN or inf values.")
            coords.append(coord)
            layers.append(
                LayerSubspace(basis, sigma, mean, int(info["pairs_kept"]), int(info["pairs_total"]))
            )
        claimed = meta.pop("content_hash", None)
        if claimed != _content_hash(meta, tensors):
            raise PackError(f"{name}: content hash mismatch; the file was altered or corrupted.")
        site = str(meta.get("site", LEGACY_SITE))
        if site not in SITES:
            raise PackError(f"{name}: unknown readout site {site!r}; known: {', '.join(SITES)}.")
        norms = [float(n) for n in meta.get("residual_norms") or []]
        if norms and (len(norms) != num_layers or not all(0 < n < 1e12 for n in norms)):
            raise PackError(f"{name}: residual_norms must be {num_layers} positive numbers.")
        calibration, training = meta.get("calibration"), meta.get("training")
        rule_defaults = _checked_rule_defaults(dict(meta.get("rule_defaults") or {}), name)
        return cls(
            axis=Axis.from_dict(meta["axis"]),
            model_id=str(meta["model_id"]),
            hidden_size=hidden,
            layers=layers,
            pooling=str(meta.get("pooling", "mean")),
            site=site,
            residual_norms=norms,
            calibration=SliderCalibration.from_dict(calibration) if calibration else None,
            pairs=pairs,
            pair_coords=coords if any(c.numel() for c in coords) else [],
            fit_config=dict(meta.get("fit_config", {})),
            rule_defaults=rule_defaults,
            timings=dict(meta.get("timings", {})),
            training=TrainingLog.from_dict(training) if training else None,
            created=str(meta.get("created", "")),
        )

    def slider_note(self) -> str:
        """One line for a slider: what ±1 means for this pack."""
        if self.calibration is None:
            return "±1 = the rule's default scale (this axis is not calibrated)"
        c = self.calibration
        return (
            f"±1 = the calibrated clean edge: +1 pushes {c.positive:g}, −1 pushes {c.negative:g} "
            "× each edited layer's residual norm"
        )

    def info(self) -> dict[str, Any]:
        """The metadata, without the pairs' full texts (those can be long)."""
        meta = self._metadata()
        meta["pairs"] = len(self.pairs)
        if self.site == LEGACY_SITE and not self.residual_norms:
            meta["site_note"] = (
                "read at the MLP output (the paper's site; packs saved before readout sites were "
                "stored are read this way). Refit for the residual readout, which steers better."
            )
        if self.fit_config.get("readout") == "persona":
            meta["readout_note"] = (
                "read at the end of the persona prompt: steers with its own rule, mean_diff on "
                "every position (rule_defaults, used unless --rule / --positions say otherwise); "
                "the per-query subspace of these differences does not carry the positive side "
                "(docs/RESULTS.md)."
            )
        if self.calibration is None:
            meta["calibration_note"] = (
                "not calibrated: slider ±1 is the rule's default scale, not a measured clean edge."
            )
        return meta


def _checked_rule_defaults(defaults: dict[str, Any], name: str) -> dict[str, Any]:
    """The settings a pack was calibrated with, refused with a message when unusable."""
    rule, positions = defaults.get("rule") or "subspace", defaults.get("positions") or "last"
    rule = LEGACY_RULE_NAMES.get(rule, rule)
    if rule not in SLIDER_RULES or positions not in POSITIONS:
        raise PackError(
            f"{name}: unknown fitted rule {rule!r} or positions {positions!r}; rules: "
            f"{', '.join(SLIDER_RULES)}, positions: {', '.join(POSITIONS)}."
        )
    band = defaults.get("band")
    if band is not None and not (
        isinstance(band, list | tuple)
        and len(band) == 2
        and all(isinstance(b, int | float) for b in band)
        and 0 <= band[0] < band[1] <= 1
    ):
        raise PackError(f"{name}: fitted band must be two fractions 0 ≤ from < to ≤ 1, got {band}.")
    return defaults | ({"rule": rule} if "rule" in defaults else {})


def _content_hash(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].float().contiguous().numpy().tobytes())
    return digest.hexdigest()
