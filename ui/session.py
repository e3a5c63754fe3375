"""A studio session as one portable file: axes (packs), slider values, prompt and settings.

The file is a zip of `session.json` plus one safetensors axis pack per axis; it is read with
size caps and every pack is validated like any other (`AxisPack.load`).
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import MAX_PACK_BYTES, AxisPack
from alignez_core.errors import PackError
from alignez_core.fitting.region import CleanRegion

SESSION_FORMAT = "alignez-session"
SESSION_VERSION = 1
MAX_AXES = 4
MAX_SESSION_BYTES = (MAX_AXES + 1) * MAX_PACK_BYTES


AS_FITTED = "as fitted"  # a rule / positions choice: each pack's own, as it was calibrated


@dataclass
class StudioSettings:
    """What a user sets besides the sliders."""

    prompt: str = ""
    rule: str = AS_FITTED  # or a rule name
    layer_mode: str = "band"  # band | band top-n | top-n (paper) | pinned
    pinned_layers: str = ""
    top_n: int = 5
    positions: str = AS_FITTED
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    budget: bool = True  # several axes at one layer share one clean budget (`budget.py`)

    def __post_init__(self) -> None:  # values arrive from UI widgets and JSON: coerce them
        self.top_n = int(self.top_n)
        if self.layer_mode == "auto":  # sessions saved before layer bands: per-query top-n
            self.layer_mode = "top-n (paper)"
        self.max_new_tokens = int(self.max_new_tokens)
        self.temperature = float(self.temperature)
        self.seed = int(self.seed or 0)
        self.budget = bool(self.budget)


@dataclass
class StudioSession:
    """One user's axes (in order), their slider values, and their settings."""

    axes: dict[str, AxisPack] = field(default_factory=dict)
    strengths: dict[str, float] = field(default_factory=dict)
    settings: StudioSettings = field(default_factory=StudioSettings)
    # The last generation's per-token states at the plotted layer (not saved in session files).
    last_traces: dict[str, Any] = field(default_factory=dict, repr=False)
    # Measured clean regions of pairs of axes, keyed by the two packs (not saved in files): a
    # refit or a new pack under the same name is a new key, so nothing stale is shown.
    regions: dict[tuple[AxisPack, AxisPack], CleanRegion] = field(default_factory=dict, repr=False)

    def region(self, first: str | None, second: str | None) -> CleanRegion | None:
        """The measured region of two of this session's axes, if there is one."""
        key = (self.axes.get(first or ""), self.axes.get(second or ""))
        return self.regions.get(key) if None not in key else None  # type: ignore[arg-type]

    def names(self) -> list[str]:
        return list(self.axes)

    def add(self, pack: AxisPack) -> str:
        """Add (or replace, when the name exists) an axis; returns the name it got."""
        if pack.name not in self.axes and len(self.axes) >= MAX_AXES:
            raise PackError(f"A session holds at most {MAX_AXES} axes; remove one first.")
        self.axes[pack.name] = pack
        self.strengths.setdefault(pack.name, 0.0)
        return pack.name

    def remove(self, name: str) -> None:
        self.axes.pop(name, None)
        self.strengths.pop(name, None)

    def rename(self, old: str, new: str) -> None:
        new = " ".join(new.split())
        if old not in self.axes:
            raise PackError(f"No axis named {old!r}.")
        if not new:
            raise PackError("The new name is empty.")
        if new != old and new in self.axes:
            raise PackError(f"An axis named {new!r} already exists.")
        pack = self.axes[old]
        pack.axis = Axis.from_dict(pack.axis.to_dict() | {"name": new})
        self.axes = {(new if k == old else k): v for k, v in self.axes.items()}
        self.strengths = {(new if k == old else k): v for k, v in self.strengths.items()}

    def pack_strengths(self) -> dict[AxisPack, float]:
        """The slider values keyed by pack, as `generate` takes them."""
        return {pack: float(self.strengths.get(name, 0.0)) for name, pack in self.axes.items()}

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            names = self.names()
            manifest = {
                "format": SESSION_FORMAT,
                "format_version": SESSION_VERSION,
                "axes": [{"name": n, "file": f"axes/{i}.safetensors"} for i, n in enumerate(names)],
                "strengths": self.strengths,
                "settings": asdict(self.settings),
            }
            archive.writestr("session.json", json.dumps(manifest, indent=2))
            for i, name in enumerate(names):
                archive.writestr(f"axes/{i}.safetensors", self.axes[name].to_bytes())
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path, lm=None) -> StudioSession:
        path = Path(path)
        if path.stat().st_size > MAX_SESSION_BYTES:
            raise PackError(f"{path.name} is too large for a session file.")
        try:
            with zipfile.ZipFile(path) as archive:
                return cls._read(archive, path.name, lm)
        except zipfile.BadZipFile:
            raise PackError(f"{path.name} is not an AlignEZ session file (not a zip).") from None

    @classmethod
    def _read(cls, archive: zipfile.ZipFile, name: str, lm) -> StudioSession:
        infos = {info.filename: info for info in archive.infolist()}
        if "session.json" not in infos or len(infos) > MAX_AXES + 1:
            raise PackError(f"{name} is not an AlignEZ session file.")
        unsafe = [m for m in infos if m.startswith("/") or "\\" in m or ".." in m.split("/")]
        if unsafe:  # members are only ever read into memory, but such a file was crafted
            raise PackError(
                f"{name}: refused, member name {unsafe[0]!r} points outside the file "
                "(a session holds session.json and axes/N.safetensors)."
            )
        if any(info.file_size > MAX_PACK_BYTES for info in infos.values()):
            raise PackError(f"{name}: a member is larger than {MAX_PACK_BYTES} bytes.")
        try:
            manifest: dict[str, Any] = json.loads(archive.read("session.json"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PackError(f"{name}: session.json is not valid JSON.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != SESSION_FORMAT:
            raise PackError(f"{name} is not an AlignEZ session file.")
        if manifest.get("format_version") != SESSION_VERSION:
            raise PackError(
                f"{name}: unsupported session version {manifest.get('format_version')}."
            )
        session = cls()
        try:
            known = {f.name for f in StudioSettings.__dataclass_fields__.values()}
            settings = {k: v for k, v in dict(manifest.get("settings", {})).items() if k in known}
            session.settings = StudioSettings(**settings)
            entries = list(manifest.get("axes", []))
        except (TypeError, ValueError):
            raise PackError(f"{name}: malformed session settings.") from None
        with tempfile.TemporaryDirectory() as tmp:
            for entry in entries:
                member = str(entry.get("file", ""))
                if member not in infos:
                    raise PackError(f"{name}: missing axis file {member!r}.")
                target = Path(tmp) / f"{len(session.axes)}.safetensors"
                target.write_bytes(archive.read(member))
                pack = AxisPack.load(target, lm)
                session.add(pack)
        for axis_name, value in dict(manifest.get("strengths", {})).items():
            finite = isinstance(value, int | float) and math.isfinite(value)
            if axis_name in session.axes and finite:
                session.strengths[axis_name] = float(value)
        return session
