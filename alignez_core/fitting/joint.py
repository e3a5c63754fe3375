"""A joint calibration of two axes: the largest common scale at which they stay clean together.

Each axis's ±1 is its own clean edge (`calibrate.py`); two at once can cross it, and the fixed
budget (`engine/budget.py`) scales their shared layers back by a rule that knows nothing of how
these two axes behave together. Here the pair is measured instead: per sign quadrant (+,+), (+,−),
(−,+), (−,−), both sliders at ±1 with every push at the layers they share scaled by a common
factor from `JOINT_SCALES` (1 = raw sums), answered on the packs' own fit queries in one batched
pass with the base answers, judged by the calibration rule. A quadrant's scale is the largest
factor of the clean run that starts at the smallest (the smallest if even that is not clean), as
single-axis calibration climbs its grid. The result is cached per pair of pack contents
(`JointCache`); `SteerSettings.shared_scale` applies it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.generation import Row
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitError
from alignez_core.steering import SteerSettings, steered_rows

from .calibrate import calibration_for_kind, is_clean
from .region import ProgressFn, fluency_per_cell, region_queries

JOINT_SCALES = (1.0, 0.8, 0.6, 0.4)
JOINT_QUERIES = 6
QUADRANTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))


def pack_fingerprint(pack: AxisPack) -> str:
    """The pack's content hash (12 hex digits): a refitted pack gets a new joint calibration."""
    return hashlib.sha256(pack.to_bytes()).hexdigest()[:12]


def quadrant_key(first: float, second: float) -> str:
    return f"{'+' if first >= 0 else '-'}{'+' if second >= 0 else '-'}"


@dataclass(frozen=True)
class JointCalibration:
    """Two packs' common scale per sign quadrant, and what it was measured on."""

    axes: tuple[str, str]
    fingerprints: tuple[str, str]
    scales: dict[str, float]  # quadrant_key → common scale at shared layers
    points: tuple[dict, ...]  # per quadrant and scale: perplexity ratio, looping, clean
    queries: int
    seconds: float

    def scale_for(self, first: float, second: float) -> float:
        """The common scale for sliders (first, second), in this calibration's axis order."""
        return self.scales[quadrant_key(first, second)]

    def settings_for(self, settings: SteerSettings, strengths: dict[str, float]) -> SteerSettings:
        """`settings` with this pair's common scale for `strengths` (axis name → slider)."""
        first, second = (strengths[name] for name in self.axes)
        if first == 0 or second == 0:
            return settings
        return replace(settings, shared_scale=self.scale_for(first, second))


def joint_calibration(
    lm: LoadedModel,
    first: AxisPack,
    second: AxisPack,
    settings: SteerSettings = SteerSettings(),
    scales: Sequence[float] = JOINT_SCALES,
    n_queries: int = JOINT_QUERIES,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> JointCalibration:
    """Measure the common scale of `first` and `second` per quadrant (module docstring)."""
    if first is second or first.name == second.name:
        raise FitError("A joint calibration needs two different axes.")
    if list(scales) != sorted(set(scales), reverse=True) or not all(0 < s <= 2 for s in scales):
        raise FitError(f"joint scales must decrease within (0, 2], got {tuple(scales)}.")
    for pack in (first, second):
        pack.check_compatible(lm)
    started = time.perf_counter()
    queries = region_queries(first, second, n_queries)
    config = replace(calibration_for_kind(lm.effective_kind), n_queries=len(queries))
    grid = [(quadrant, scale) for quadrant in QUADRANTS for scale in scales]
    rows = [Row(q) for q in queries]
    for (a, b), scale in grid:
        chosen = replace(settings, shared_scale=scale)
        rows += steered_rows(lm, queries, {first: float(a), second: float(b)}, chosen)
    base, cells = fluency_per_cell(
        lm, rows, len(queries), config, max_new_tokens, batch_size, "joint calibration",
        progress, cancel,
    )  # fmt: skip
    points = []
    for ((a, b), scale), measured in zip(grid, cells, strict=True):
        points.append({"quadrant": quadrant_key(a, b), "scale": scale,
                       "perplexity_ratio": round(measured["perplexity"] / base["perplexity"], 4),
                       "looping": measured["degenerate"],
                       "clean": is_clean(measured, base, config)})  # fmt: skip
    clean = {(p["quadrant"], p["scale"]): p["clean"] for p in points}
    chosen_scales = {}
    for a, b in QUADRANTS:  # from the smallest scale up, as `calibrate` climbs its grid
        key = quadrant_key(a, b)
        chosen_scales[key] = scales[-1]
        for scale in reversed(scales):
            if not clean[key, scale]:
                break
            chosen_scales[key] = scale
    return JointCalibration(
        (first.name, second.name), (pack_fingerprint(first), pack_fingerprint(second)),
        chosen_scales, tuple(points), len(queries), time.perf_counter() - started,
    )  # fmt: skip


class JointCache:
    """Joint calibrations on disk, one JSON file per pair of pack contents (either order)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, fingerprints: tuple[str, str]) -> Path:
        return self.folder / f"joint-{'-'.join(sorted(fingerprints))}.json"

    def get(self, first: AxisPack, second: AxisPack) -> JointCalibration | None:
        """The stored calibration of these two packs, in the order asked; None if none (or
        unreadable: it is measured again)."""
        fingerprints = (pack_fingerprint(first), pack_fingerprint(second))
        try:
            data = json.loads(self._path(fingerprints).read_text())
            found = JointCalibration(
                tuple(data["axes"]), tuple(data["fingerprints"]),
                {k: float(v) for k, v in data["scales"].items()}, tuple(data["points"]),
                int(data["queries"]), float(data["seconds"]),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if found.fingerprints == fingerprints:
            return found
        flipped = {quadrant_key(b, a): found.scale_for(a, b) for a, b in QUADRANTS}
        return replace(
            found, axes=found.axes[::-1], fingerprints=found.fingerprints[::-1], scales=flipped
        )

    def put(self, calibration: JointCalibration, first: AxisPack, second: AxisPack) -> Path:
        path = self._path((pack_fingerprint(first), pack_fingerprint(second)))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(calibration)))
        temporary.replace(path)
        return path
